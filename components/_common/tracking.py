"""MLflow tracking and model registry, through the MlflowClient.

The tracking URI is, in order: the `tracking_uri` argument, the MLFLOW_TRACKING_URI environment variable, or a sqlite
file `mlflow.db` in the working folder (artifacts beside it in `mlruns/`). The registry uses the same URI.

Inside a Kubernetes pod (KUBERNETES_SERVICE_HOST is set) each pipeline step is a pod of its own: a registry in a local
file (the default sqlite, any `sqlite:`, `file:` or plain path) would be that pod's alone, and a later step would not
find what this one registered. There a local URI is refused before anything is written or fitted; the pipeline's
`tracking_uri` parameter or the key MLFLOW_TRACKING_URI of the Secret `kfp-ct-credentials` names the shared server.

Aliases name the roles of a registered model's versions: `challenger` (blessed by evaluate), `champion` (serving,
set by `promote`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

CHAMPION, CHALLENGER = "champion", "challenger"
DEFAULT_DB = "mlflow.db"
SECRET = "kfp-ct-credentials"  # kfp_ct.pipelines.credentials.SECRET_NAME (components never import pipelines/)


def resolve_uri(tracking_uri: str | None = None) -> str:
    """The tracking URI to use (see the module docstring); raises ValueError for a local one inside a pod."""
    from urllib.parse import urlparse

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    local = not uri or (uri != "databricks" and urlparse(uri).scheme.lower() in ("", "sqlite", "file"))
    if local and os.environ.get("KUBERNETES_SERVICE_HOST"):
        given = f"the tracking URI {uri} is a local file" if uri else "no tracking URI is set"
        raise ValueError(
            f"{given}, inside a Kubernetes pod: each pipeline step runs in a pod of its own, so a local MLflow "
            f"registry would not outlive this step and the next one could not find the versions registered here. "
            f"Point the pipeline parameter `tracking_uri` at a shared MLflow tracking server, or set the key "
            f"MLFLOW_TRACKING_URI of the Secret `{SECRET}` in the run's namespace (see cluster/ in kfp-ct)"
        )
    return uri or f"sqlite:///{os.path.abspath(DEFAULT_DB)}"


def client(tracking_uri: str | None = None):
    """An MlflowClient for tracking and registry at the resolved URI."""
    from mlflow.tracking import MlflowClient

    uri = resolve_uri(tracking_uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(mlflow_client, name: str) -> str:
    """The id of the experiment `name`, created when missing (with artifacts beside a local sqlite file)."""
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    uri = mlflow_client.tracking_uri
    if uri.startswith("sqlite:///"):
        location = Path(uri[len("sqlite:///") :]).resolve().parent.joinpath("mlruns").as_uri()
    try:
        return mlflow_client.create_experiment(name, artifact_location=location)
    except Exception:  # created meanwhile by a concurrent run
        experiment = mlflow_client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def _not_found(err: Exception) -> bool:
    return getattr(err, "error_code", "") in (
        "RESOURCE_DOES_NOT_EXIST",
        "NOT_FOUND",
    ) or "RESOURCE_DOES_NOT_EXIST" in str(err)


def register_version(
    model_name: str,
    source: str,
    run_id: str | None = None,
    tracking_uri: str | None = None,
    tags: dict | None = None,
    description: str | None = None,
) -> str:
    """Registers `source` (a model's artifact URI) as a new version of `model_name`; returns the version."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client(tracking_uri)
    try:
        mlflow_client.get_registered_model(model_name)
    except MlflowException as err:
        if not _not_found(err):
            raise
        try:
            mlflow_client.create_registered_model(model_name)
        except MlflowException as again:  # created meanwhile
            if "ALREADY_EXISTS" not in str(again) and getattr(again, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                raise
    version = mlflow_client.create_model_version(
        model_name, source, run_id=run_id, tags={k: str(v) for k, v in (tags or {}).items()}, description=description
    )
    return str(version.version)


def versions(model_name: str, tracking_uri: str | None = None) -> list[str]:
    """Every registered version of `model_name` (an empty list when the model is not registered)."""
    mlflow_client = client(tracking_uri)
    found = mlflow_client.search_model_versions(f"name = '{_quote(model_name)}'")
    return sorted((str(v.version) for v in found), key=int)


def version_for_run(model_name: str, run_id: str, tracking_uri: str | None = None) -> str | None:
    """The version of `model_name` registered from the MLflow run `run_id`, if any (the latest one)."""
    mlflow_client = client(tracking_uri)
    found = mlflow_client.search_model_versions(f"name = '{_quote(model_name)}' and run_id = '{_quote(run_id)}'")
    numbers = sorted((int(v.version) for v in found), reverse=True)
    return str(numbers[0]) if numbers else None


def get_alias(model_name: str, alias: str, tracking_uri: str | None = None) -> str | None:
    """The version that `alias` points at, or None (no such alias, or no such model)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client(tracking_uri).get_model_version_by_alias(model_name, alias).version)
    except MlflowException as err:
        if _not_found(err) or "alias" in str(err).lower():
            return None
        raise


def set_alias(model_name: str, alias: str, version: str | int, tracking_uri: str | None = None) -> str | None:
    """Points `alias` at `version` (moving it from wherever it was); returns the version it pointed at before."""
    previous = get_alias(model_name, alias, tracking_uri)
    client(tracking_uri).set_registered_model_alias(model_name, alias, str(version))
    return previous


def promote(model_name: str, version: str | int, alias: str = CHAMPION, tracking_uri: str | None = None) -> str | None:
    """Makes `version` the `alias` (champion by default); returns the version that held it before."""
    mlflow_client = client(tracking_uri)
    mlflow_client.get_model_version(model_name, str(version))  # fails clearly when the version does not exist
    return set_alias(model_name, alias, version, tracking_uri)


def download_version(
    model_name: str, version: str | int, dst: str | os.PathLike | None = None, tracking_uri: str | None = None
) -> str:
    """Downloads a registered version's model directory; returns its local path."""
    import mlflow.artifacts

    mlflow_client = client(tracking_uri)
    source = mlflow_client.get_model_version_download_uri(model_name, str(version))
    dst = str(dst) if dst is not None else tempfile.mkdtemp(prefix=f"kfp-ct-{model_name}-v{version}-")
    os.makedirs(dst, exist_ok=True)
    return mlflow.artifacts.download_artifacts(
        artifact_uri=source, dst_path=dst, tracking_uri=resolve_uri(tracking_uri)
    )


def champion(
    model_name: str, tracking_uri: str | None = None, dst: str | os.PathLike | None = None, alias: str = CHAMPION
) -> tuple[str, str] | None:
    """(version, local model directory) of the champion of `model_name`, downloaded under `dst` (a new temporary
    directory when None, which the caller removes); None when there is none."""
    version = get_alias(model_name, alias, tracking_uri)
    if version is None:
        return None
    return version, download_version(model_name, version, dst, tracking_uri)


def _quote(value: str) -> str:
    return str(value).replace("'", "\\'")
