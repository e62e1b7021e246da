# The two commands a user needs: `make demo` and `make test`. Everything else is here for developers.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test compile manifests lint bench

$(STAMP): setup.cfg constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[all,test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/kfp-ct demo

# CONTAINERS=1 (what .ci/run asks for): the container tier runs too and must pass. podman and the CPU and serving
# images are made ready first (containers-ready, in containers.mk) and the tier's tests fail instead of skipping.
# Without it, those tests run only where a Docker API and the built images are found, and skip, saying why, elsewhere.
CONTAINERS ?= 0
PYTEST_ARGS ?=
ifeq ($(filter 0 1,$(CONTAINERS)),)
$(error CONTAINERS must be 0 or 1, not '$(CONTAINERS)')
endif

test: install $(if $(filter 1,$(CONTAINERS)),containers-ready)
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium is not installed: the test that renders index.html will be skipped"
	$(if $(filter 1,$(CONTAINERS)),$(CONTAINERS_ENV)) $(BIN)/python -m pytest $(PYTEST_ARGS)

compile: install
	$(BIN)/kfp-ct compile --readme README.md
	$(BIN)/kfp-ct manifests

manifests: install
	$(BIN)/kfp-ct manifests

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

# Container images and the container test tier (podman or docker): make image, make base-image, make test-containers.
include containers.mk
