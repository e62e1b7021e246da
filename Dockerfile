# The catalog's component image (CPU): kfp, kfp-ct and what its components need (the serving, tuning and monitoring
# extras), without torch and TensorFlow (those are in Dockerfile.gpu). Every component of the catalog names this
# image (kfp_ct.components._common.images.IMAGE), so tag it with that name:
#
#   docker build -t "$(python -c 'from kfp_ct.components._common.images import IMAGE; print(IMAGE)')" .
#
# Base: any Debian-like image with Python 3.11 and its venv module: python:3.11-slim by default, or the registry-free
# Debian bookworm base that `make base-image` builds (`--build-arg BASE_IMAGE=localhost/kfp-ct-base:bookworm`).
# Dependencies come from .ci/containers/wheelhouse/ when it holds wheels (`make wheelhouse` fills it on the host, so
# the build needs no network), else from PyPI. kfp-ct itself is always built from the source in the context.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
ARG EXTRAS=serving,tuning,monitoring
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
COPY .ci/containers/wheelhouse/ /wheelhouse/
COPY .ci/containers/requirements.py .ci/containers/slim_venv.sh setup.cfg constraints.txt /src/
# Dependencies first, in their own layer: a change to the catalog's code rebuilds only the small layer below.
RUN set -eu; \
    if ls /wheelhouse/*.whl >/dev/null 2>&1; then index="--no-index"; else index=""; fi; \
    python3 -m venv /opt/kfp-ct; \
    python3 /src/requirements.py /src/setup.cfg "${EXTRAS}" > /src/requirements.txt; \
    /opt/kfp-ct/bin/pip install $index --find-links /wheelhouse -c /src/constraints.txt -r /src/requirements.txt; \
    sh /src/slim_venv.sh /opt/kfp-ct; \
    /opt/kfp-ct/bin/python -c "import mlflow.sklearn, sklearn.ensemble, pandas, pyarrow.parquet, scipy.stats, \
evidently.presets, plotly.graph_objects, kserve, optuna, kubeflow_katib_api.models, google.cloud.storage, skops.io, kfp"
COPY pyproject.toml __init__.py README.md /src/
COPY components/ /src/components/
COPY pipelines/ /src/pipelines/
RUN set -eu; \
    if ls /wheelhouse/*.whl >/dev/null 2>&1; then index="--no-index"; else index=""; fi; \
    /opt/kfp-ct/bin/pip install $index --find-links /wheelhouse --no-deps /src; \
    /opt/kfp-ct/bin/pip check; \
    /opt/kfp-ct/bin/python -c "import kfp, kfp_ct.components; print('kfp', kfp.__version__, 'kfp-ct', kfp_ct.__version__)"

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="kfp-ct" \
      org.opencontainers.image.description="Kubeflow Pipelines v2 components for continuous training (CPU)" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /opt/kfp-ct /opt/kfp-ct
# A fixed numeric non-root user, so Kubernetes' runAsNonRoot can check it; HOME is writable for caches (matplotlib).
RUN useradd --uid 1000 --user-group --create-home --home-dir /home/kfp-ct --shell /usr/sbin/nologin kfp-ct
# the registry that hosts the images (`make image push REGISTRY=...`): what a step names at run time (Katib trials,
# a torch or Keras predictor) comes from there; empty: the default of components/_common/images.py
ARG KFP_CT_IMAGE_REGISTRY=
# Models are data: MLflow never unpickles a model in these containers (the catalog loads skops, torch weights
# and .keras files itself, in their safe modes).
ENV PATH=/opt/kfp-ct/bin:$PATH PYTHONUNBUFFERED=1 HOME=/home/kfp-ct KFP_CT_IMAGE_REGISTRY=${KFP_CT_IMAGE_REGISTRY} \
    MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false
USER 1000:1000
WORKDIR /home/kfp-ct
CMD ["python3", "-c", "import kfp_ct; print('kfp-ct', kfp_ct.__version__)"]
