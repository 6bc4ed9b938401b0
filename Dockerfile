# The image of `hello`: one static executable in an empty root.
#
#   docker build -t hello .      from source, no arguments needed (stamps commit
#                                "unknown" and build date "unknown", see below)
#   build/image                  (make image; CI's build-image job) the dist/hello
#                                already built and verified, unchanged: no second build
#
# Where /hello comes from, HELLO_BINARY_FROM:
#   source (default)  the builder stage below freezes it with build/binary, from
#                     requirements/build.txt (hashes required)
#   dist              the context's dist/hello as it is, byte for byte (build/image
#                     then checks the image's /hello against dist/hello.sha256)
# On the same builder base both routes hold the same bytes: CI's build-binary job
# makes dist/hello in this very builder stage (build/binary-in-docker, `--target
# dist`), so PYTHON_IMAGE below is the one place the pinned Python is named.
#
# Stamp (source route): HELLO_COMMIT and SOURCE_DATE_EPOCH, e.g.
#   docker build --build-arg HELLO_COMMIT="$(git rev-parse HEAD)" \
#       --build-arg SOURCE_DATE_EPOCH="$(git log -1 --format=%ct)" -t hello .
# Without them (the context has no .git) /version and `hello version` say commit
# "unknown", built "unknown": honest, and still byte-reproducible (file times in
# the binary's archives are then 0). The labels come from build/image, which
# reads them from `hello version --json`; a bare `docker build` leaves them "unknown".
#
# BuildKit (Debian's docker 20.10 client, or buildx) builds only the stages the
# route needs. The legacy builder works too but builds every stage, so it runs the
# source build even for HELLO_BINARY_FROM=dist (the result is still dist/hello).

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm
ARG HELLO_BINARY_FROM=source

FROM ${PYTHON_IMAGE} AS builder
# PyInstaller finds shared-library dependencies with objdump; the slim image has
# no binutils. staticx's bootloader is compiled from its pinned sdist with our patch
# (spec/staticx_bootloader.py): gcc with musl's static libc, and patch. Pinned: the
# frozen binary must not change with the day it is built.
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils=2.40-2 \
        gcc=4:12.2.0-3 gcc-12=12.2.0-14+deb12u1 musl-tools=1.2.3-1 patch=2.7.6-7 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what build/binary reads (.dockerignore also keeps everything else out).
COPY build/binary build/binary
COPY requirements/build.txt requirements/runtime.txt requirements/
COPY spec/ spec/
COPY hello/ hello/
ARG HELLO_COMMIT=unknown
ARG SOURCE_DATE_EPOCH
ENV PIP_NO_CACHE_DIR=1
RUN build/binary

# `build/binary-in-docker` exports this stage: dist/hello, its checksum and SBOM.
FROM scratch AS dist
COPY --from=builder /src/dist/ /

# The final stage's root, prepared here: `COPY --chmod` on a directory is ignored by
# dockerd 20.10's BuildKit and rejected by the legacy builder, and the staticx
# bootloader needs a writable /tmp (sticky, any user) to unpack into.
FROM ${PYTHON_IMAGE} AS rootfs
RUN mkdir -p /rootfs/tmp && chmod 1777 /rootfs/tmp

FROM rootfs AS binary-source
COPY --from=builder /src/dist/hello /rootfs/hello

FROM rootfs AS binary-dist
COPY dist/hello /rootfs/hello

# A stage of this file, not an image: nothing to tag.
# hadolint ignore=DL3006
FROM binary-${HELLO_BINARY_FROM} AS binary

FROM scratch
ARG HELLO_VERSION=unknown
ARG HELLO_COMMIT=unknown
ARG HELLO_CREATED=unknown
ARG HELLO_SOURCE=unknown
LABEL org.opencontainers.image.title="hello" \
      org.opencontainers.image.description="A tiny HTTP service for checking deployments" \
      org.opencontainers.image.version="${HELLO_VERSION}" \
      org.opencontainers.image.revision="${HELLO_COMMIT}" \
      org.opencontainers.image.created="${HELLO_CREATED}" \
      org.opencontainers.image.source="${HELLO_SOURCE}" \
      org.opencontainers.image.licenses="MIT"
COPY --from=binary /rootfs/ /
USER 65534:65534
ENV PORT=8080
EXPOSE 8080
STOPSIGNAL SIGTERM
# The binary probes itself: the image has no curl and no shell. A probe is a start of
# the binary (unpack, then Python); its worst case with the container held to a quarter
# of a CPU and its server under load is in bench/RESULTS.md (`## Resources`), and the
# timeout is over four times that; below a quarter of a CPU, raise --health-timeout. A
# probe killed at its timeout leaves its unpack, which the next start removes.
HEALTHCHECK --interval=10s --timeout=6s --start-period=5s --retries=3 \
    CMD ["/hello", "healthcheck"]
ENTRYPOINT ["/hello"]
CMD ["serve"]
