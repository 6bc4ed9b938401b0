# The image of `hello`: one static executable in an empty root.
#
#   build/image            (make image; what CI runs) or by hand:
#   docker build --build-arg HELLO_COMMIT="$(git rev-parse HEAD)" \
#       --build-arg SOURCE_DATE_EPOCH="$(git log -1 --format=%ct)" -t hello .
#
# Stage 1 freezes the service with the same build/binary every other build runs,
# from requirements/build.txt (hashes required). Stage 2 is `scratch` plus that file
# and an empty /tmp: no shell, no libc, no package manager, nothing to patch.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# PyInstaller finds shared-library dependencies with objdump; the slim image has
# no binutils. Pinned: the frozen binary must not change with the day it is built.
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils=2.40-2 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# .dockerignore lets in only what build/binary reads.
COPY . .
# No .git in the context: the commit and its date come in as build arguments.
ARG HELLO_COMMIT
ARG SOURCE_DATE_EPOCH
ENV PIP_NO_CACHE_DIR=1
RUN build/binary
# The final stage's root, prepared here: `COPY --chmod` on a directory is ignored by
# dockerd 20.10's BuildKit and rejected by the legacy builder, and the staticx
# bootloader needs a writable /tmp (sticky, any user) to unpack into.
RUN mkdir -p /rootfs/tmp \
    && chmod 1777 /rootfs/tmp \
    && cp dist/hello /rootfs/hello

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
COPY --from=builder /rootfs/ /
USER 65534:65534
ENV PORT=8080
EXPOSE 8080
STOPSIGNAL SIGTERM
# The binary probes itself (http.client): the image has no curl and no shell.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/hello", "healthcheck"]
ENTRYPOINT ["/hello"]
CMD ["serve"]
