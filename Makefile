# The verbs a person types. CircleCI calls these same targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
CHECKOV_VENV ?= .venv-checkov
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
RESULTS ?= test-results
# The arm64 root lives outside the checkout (it holds device nodes, and a copy of the
# tree must not carry 500 MB of it), one per checkout, in tests/infra/arm64-root's
# root-only cache folder (the release build runs in it as root).
ARM64_ROOT ?= /var/tmp/hello-arm64-cache/root-$(shell printf %s "$(CURDIR)" | sha256sum | cut -c1-12)
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' hello/__init__.py)
DEPLOY_ARGS ?=
ARGS ?=

.PHONY: help venv checkov-venv dev run test test-service verify-binary test-image test-deploy \
        test-pipeline test-swarm test-manifests lint binary binary-in-docker verify-rebuild image deploy bench mutation clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.done: requirements/test.txt setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --require-hashes -r requirements/test.txt
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.done ## the development venv (pinned, hashed test requirements)

$(CHECKOV_VENV)/.done: requirements/checkov.txt
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --require-hashes -r requirements/checkov.txt
	touch $@

checkov-venv: $(CHECKOV_VENV)/.done ## checkov in a venv of its own (pinned, hashed); the manifests suite runs it

dev: venv ## serve from source: make dev ARGS="--port 9000"
	$(PY) -m hello serve $(ARGS)

dist/hello: $(shell find hello spec -type f -not -path '*/__pycache__/*' 2>/dev/null) requirements/build.txt build/binary
	build/binary

run: dist/hello ## build the binary if it is stale, then run it: make run ARGS="--port 9000"
	dist/hello serve $(ARGS)

test: venv checkov-venv dist/hello ## every suite (what .ci/run runs), on a fresh dist/hello; JUnit XML in test-results/
	$(PYTEST) --junitxml=$(RESULTS)/junit.xml $(PYTEST_ARGS)

test-service: venv ## unit and server tests of the service
	$(PYTEST) tests/unit tests/server --junitxml=$(RESULTS)/service.xml

verify-binary: venv ## black-box suite against the existing dist/hello (no rebuild)
	$(PYTEST) tests/binary --junitxml=$(RESULTS)/binary.xml

test-image: venv ## image suite (needs a docker engine)
	$(PYTEST) tests/image --junitxml=$(RESULTS)/image.xml

test-deploy: venv ## deploy suite against the simulated droplet
	$(PYTEST) tests/deploy --junitxml=$(RESULTS)/deploy.xml

test-swarm: venv ## the stack on a live 3-node swarm (root; about 4 min)
	$(PYTEST) tests/swarm --junitxml=$(RESULTS)/swarm.xml

test-manifests: venv checkov-venv ## offline checks of deploy/k8s and .do/app.yaml
	$(PYTEST) tests/k8s tests/app --junitxml=$(RESULTS)/manifests.xml

test-pipeline: venv ## offline validation of .circleci/config.yml
	$(PYTEST) tests/pipeline --junitxml=$(RESULTS)/pipeline.xml

# Every tracked (or new, not ignored) file whose first line is a sh/bash shebang.
SHELL_SCRIPTS = $(shell git ls-files -co --exclude-standard | while read -r f; do \
	[ -f "$$f" ] && head -n1 "$$f" | grep -qE '^\#!.*[/ ](ba|da)?sh$$' && echo "$$f"; done)

lint: venv ## ruff, shellcheck, hadolint, yamllint
	$(VENV)/bin/ruff check hello tests bench spec build/provenance build/verify-release build/image-index
	$(VENV)/bin/shellcheck $(SHELL_SCRIPTS)
	$(VENV)/bin/hadolint Dockerfile
	$(VENV)/bin/yamllint -s .circleci .yamllint.yml

binary: ## build dist/hello (+ .sha256, SBOM) from requirements/build.txt
	build/binary

binary-in-docker: ## build dist/hello in the Dockerfile's pinned builder, as CI does (rebuild and compare CI's)
	build/binary-in-docker

# The arm64 root (tests/infra/arm64-root): made once, reused by the arm64 targets.
$(ARM64_ROOT)/.complete:
	rm -rf $(ARM64_ROOT) && tests/infra/arm64-root $(ARM64_ROOT)

binary-arm64: $(ARM64_ROOT)/.complete ## dist/hello-<version>-linux-arm64 built here under emulation (root; about 7 min the first time)
	tests/infra/arm64-binary $(ARM64_ROOT)

verify-binary-arm64: venv ## black-box suite against dist/hello-<version>-linux-arm64, under emulation (root)
	HELLO_BINARY=dist/hello-$(VERSION)-linux-arm64 HELLO_TIME_SCALE=$(if $(filter aarch64 arm64,$(shell uname -m)),1,5) \
	    $(PYTEST) tests/binary --junitxml=$(RESULTS)/binary-arm64.xml

verify-rebuild-arm64: $(ARM64_ROOT)/.complete ## verify-rebuild of the arm64 binary, both builds under emulation (root)
	HELLO_BUILD_RUNNER="tests/infra/arm64-run $(abspath $(ARM64_ROOT))" build/verify-rebuild

verify-rebuild: ## build twice in two folders (umask, TZ, locale, host, clock varied): same bytes?
	build/verify-rebuild

# No dist/hello prerequisite on purpose: the image carries the dist/hello that is
# there (CI's verified one), never one make decided to rebuild.
image: ## image hello:<version> + :latest holding dist/hello, checked against dist/hello.sha256 (IMAGE_TAR=path also saves it)
	build/image

image-index: ## dist/hello-oci.tar: one OCI image index, linux/amd64 + linux/arm64, from dist's release binaries
	build/image-index dist

deploy: ## ship to a droplet: make deploy DEPLOY_ARGS="binary user@host -F ssh_config"
	build/deploy $(DEPLOY_ARGS)

bench: venv ## benchmarks; results go in bench/RESULTS.md
	$(PY) bench/run.py $(BENCH_ARGS)

$(VENV)/.mutation: $(VENV)/.done requirements/mutation.txt
	$(VENV)/bin/pip install --quiet --require-hashes -r requirements/mutation.txt
	touch $@

mutation: $(VENV)/.mutation ## mutation score of hello/ against the unit and server tests (mutmut); tests/mutation/REPORT.md
	$(PY) tests/mutation/run.py $(ARGS)

clean: ## remove build outputs and caches (keeps the venv)
	rm -rf dist .pyinstaller .pyinstaller-arm64 $(ARM64_ROOT) $(RESULTS) mutants .mutmut-hits .pytest_cache .ruff_cache *.egg-info hello.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
