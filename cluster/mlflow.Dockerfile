# The MLflow tracking server of cluster/mlflow-deployment.yaml: MLflow at the version the catalog's steps use
# (constraints.txt), boto3 for the S3/MinIO artifact store, psycopg2 for a PostgreSQL backend store. It runs as
# uid 1000, the Deployment's runAsUser.
#
# Built by `make image-mlflow [REGISTRY=...]`, tagged with the name the manifest uses
# (kfp_ct.components._common.images.MLFLOW_IMAGE).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
COPY constraints.txt /tmp/constraints.txt
RUN set -eu; \
    python3 -m pip install -c /tmp/constraints.txt mlflow boto3 psycopg2-binary; \
    python3 -c "import mlflow.server, boto3, psycopg2; print('mlflow', mlflow.__version__)"; \
    useradd --uid 1000 --create-home mlflow
USER 1000
WORKDIR /home/mlflow
EXPOSE 5000
ENTRYPOINT ["mlflow"]
CMD ["server", "--host=0.0.0.0", "--port=5000"]
