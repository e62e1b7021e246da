# Container images and the container test tier (included by the Makefile).
#
#   make image             the component image (CPU), the GPU training image and the serving image
#   make image-cpu / image-gpu / image-serving
#   make image-mlflow      the tracking server's image of cluster/ (cluster/mlflow.Dockerfile; pip installs MLflow
#                          from PyPI inside the build, so it needs a build with network access)
#   make push              push the three images to the registry their names give
#   make image push REGISTRY=registry.example.org/ml
#                          the images of an organisation that hosts them: named there, the name baked into them
#                          (KFP_CT_IMAGE_REGISTRY), pushed; then `kfp-ct compile --image-registry registry.example.org/ml`
#   make base-image        a Python 3.11 base built from Debian packages (debootstrap), for machines without a registry
#   make wheelhouse        the images' dependencies as wheels, built on the host (the builds then need no network)
#   make wheelhouse-gpu    the same plus the CUDA builds of torch and TensorFlow, for the GPU image (several GB)
#   make test-containers   podman set up here, base + CPU + serving images built, then `pytest -m containers`:
#                          `make test CONTAINERS=1` with only the tier selected
#   make containers-ready  all that the tier needs before pytest (`make test CONTAINERS=1` depends on it)
#   make containers-setup  podman (installed with apt-get if missing) configured for this kind of machine, serving
#                          the Docker API; `. $(CT_HOME)/env.sh` points DOCKER_HOST and podman at it
#
# ENGINE is podman when it is installed, else docker when a Docker engine answers, else podman (installed).
# BASE_IMAGE defaults to the registry-free Debian base; elsewhere: make image BASE_IMAGE=python:3.11-slim
# GPU_BASE_IMAGE=nvidia/cuda:13.0.2-base-ubuntu22.04. The GPU image's wheelhouse holds several GB of CUDA wheels:
# `make image` builds it; CI and the tests never do.

CT_HOME ?= /var/tmp/kfp-ct-podman
CT_ENV := $(CT_HOME)/env.sh
CT_DIR := .ci/containers
LOCAL_BASE := localhost/kfp-ct-base:bookworm
BASE_IMAGE ?= $(LOCAL_BASE)
GPU_BASE_IMAGE ?= $(BASE_IMAGE)
ENGINE ?= $(shell if command -v podman >/dev/null 2>&1; then echo podman; \
                  elif docker info >/dev/null 2>&1; then echo docker; else echo podman; fi)
# podman reads the private configuration that containers-setup writes
ENGINE_CMD = $(if $(filter podman,$(ENGINE)),. $(CT_ENV) && podman,$(ENGINE))
WHEELHOUSE_STAMP := $(CT_DIR)/wheelhouse/.stamp
WHEELHOUSE_GPU_STAMP := $(CT_DIR)/wheelhouse-gpu/.stamp
# REGISTRY (default: the one components/_common/images.py names) reaches the image names and, as a build argument, the images
REGISTRY ?=
REGISTRY_ENV = $(if $(REGISTRY),KFP_CT_IMAGE_REGISTRY=$(REGISTRY))
image_name = $$($(REGISTRY_ENV) $(BIN)/python -c 'from kfp_ct.components._common.images import $(1); print($(1))')
# superseded final images (untagged, with the title label) go; untagged builder stages stay: they are the layer cache
PRUNE = $(ENGINE_CMD) image prune -f --filter label=org.opencontainers.image.title >/dev/null
# each image carries the hash of the source it was built from; tests/containers check it against the tree
BUILD = $(ENGINE_CMD) build --network host --label org.kfp-ct.source-sha256=$$($(BIN)/python $(CT_DIR)/source_hash.py) \
	$(if $(REGISTRY),--build-arg KFP_CT_IMAGE_REGISTRY=$(REGISTRY))

.PHONY: image image-cpu image-gpu image-serving image-mlflow push base-image wheelhouse wheelhouse-gpu containers-setup containers-stop \
        test-containers containers-ready image-sizes

containers-setup:
ifeq ($(ENGINE),podman)
	PYTHON=$(PYTHON) KFP_CT_PODMAN_HOME=$(CT_HOME) bash $(CT_DIR)/podman-setup.sh start
else
	@echo "using the Docker engine that answers 'docker info'"
endif

containers-stop:
	KFP_CT_PODMAN_HOME=$(CT_HOME) bash $(CT_DIR)/podman-setup.sh stop

base-image: containers-setup
ifeq ($(BASE_IMAGE),$(LOCAL_BASE))
	$(if $(filter podman,$(ENGINE)),. $(CT_ENV) &&) ENGINE=$(ENGINE) KFP_CT_PODMAN_HOME=$(CT_HOME) \
		bash $(CT_DIR)/base-image.sh $(LOCAL_BASE)
else
	@echo "base image: $(BASE_IMAGE) (from its registry)"
endif

WHEELHOUSE_INPUTS := setup.cfg constraints.txt $(CT_DIR)/requirements.py $(CT_DIR)/wheelhouse.sh

$(WHEELHOUSE_STAMP): $(WHEELHOUSE_INPUTS) | $(STAMP)
	bash $(CT_DIR)/wheelhouse.sh $(BIN)/python
	touch $@

$(WHEELHOUSE_GPU_STAMP): $(WHEELHOUSE_INPUTS) $(CT_DIR)/gpu-requirements.txt | $(STAMP)
	bash $(CT_DIR)/wheelhouse.sh $(BIN)/python gpu
	touch $@

wheelhouse: $(WHEELHOUSE_STAMP)

wheelhouse-gpu: $(WHEELHOUSE_GPU_STAMP)

image-cpu: install base-image wheelhouse
	$(BUILD) --build-arg BASE_IMAGE=$(BASE_IMAGE) -f Dockerfile -t $(call image_name,IMAGE) .
	$(PRUNE)

image-serving: install base-image wheelhouse
	$(BUILD) --build-arg BASE_IMAGE=$(BASE_IMAGE) -f kserve/Dockerfile -t $(call image_name,SERVING_IMAGE) .
	$(PRUNE)

image-gpu: install base-image wheelhouse-gpu
	$(BUILD) --build-arg BASE_IMAGE=$(GPU_BASE_IMAGE) -f Dockerfile.gpu -t $(call image_name,GPU_IMAGE) .
	$(PRUNE)

image-mlflow: install base-image
	$(BUILD) --build-arg BASE_IMAGE=$(BASE_IMAGE) -f cluster/mlflow.Dockerfile -t $(call image_name,MLFLOW_IMAGE) .
	$(PRUNE)

image: image-cpu image-gpu image-serving image-sizes

push:
	for name in IMAGE GPU_IMAGE SERVING_IMAGE; do \
		$(ENGINE_CMD) push $$($(REGISTRY_ENV) $(BIN)/python -c "from kfp_ct.components._common.images import $$name; print($$name)") \
			|| exit 1; \
	done

image-sizes:
	@for name in IMAGE GPU_IMAGE SERVING_IMAGE; do \
		tag=$$($(REGISTRY_ENV) $(BIN)/python -c "from kfp_ct.components._common.images import $$name; print($$name)"); \
		size=$$($(ENGINE_CMD) image inspect --format '{{.Size}}' $$tag 2>/dev/null); \
		if [ -n "$$size" ]; then echo "$$tag $$size" | awk '{printf "%-45s %6.2f GB\n", $$1, $$2/1e9}'; \
		else echo "$$tag: not built"; fi; \
	done

# What the container tier needs before pytest: the API, the CPU and serving images. `make test CONTAINERS=1` (CI, see
# .ci/run) depends on it and runs pytest with CONTAINERS_ENV: DOCKER_HOST at podman's API, and the tier required.
containers-ready: image-cpu image-serving

CONTAINERS_ENV = $(if $(filter podman,$(ENGINE)),. $(CT_ENV) &&) KFP_CT_REQUIRE_CONTAINERS=1

test-containers:
	$(MAKE) test CONTAINERS=1 PYTEST_ARGS='-m containers tests/containers'
