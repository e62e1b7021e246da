"""MLflow tracking and model registry, through the MlflowClient.

The tracking URI is, in order: the `tracking_uri` argument, the MLFLOW_TRACKING_URI environment variable, or a sqlite
file `mlflow.db` in the working folder (artifacts beside it in `mlruns/`). The registry uses the same URI.

Inside a Kubernetes pod (KUBERNETES_SERVICE_HOST is set) each pipeline step is a pod of its own: a registry in a local
file (the default sqlite, any `sqlite:`, `file:` or plain path) would be that pod's alone, and a later step would not
find what this one registered. There a local URI is refused before anything is written or fitted; the pipeline's
`tracking_uri` parameter or the key MLFLOW_TRACKING_URI of the Secret `kfp-ct-credentials` names the shared server.
A local run (`kfp-ct run` or `demo` under kfp.local, e.g. in a Kubeflow notebook server) runs every step on one
machine, sharing its files: it sets LOCAL_RUN, and there a local registry is the run's own, as anywhere else.

Aliases name the roles of a registered model's versions: `challenger` (blessed by evaluate), `champion` (serving,
set by `promote`). `set_alias` also records the version in the registered model's tag `kfp_ct.alias.<alias>`:
MLflow drops an alias with the version it points at, and the tag tells "the champion was deleted" (an error, see
`resolve_alias`) apart from "there never was a champion" (a first model).

What the catalog records in the registry, besides the aliases (read back by `kfp-ct status`, `promote`, `reject` and
`rollback`, kfp_ct.pipelines.delivery):
- on each evaluated version (`record_evaluation`): `kfp_ct.blessed` (true or false), `kfp_ct.blessing_rule` (the rule
  that decided) and `kfp_ct.evaluation` (JSON: the test metrics, the champion compared with, each check's verdict);
- on each version that became the champion (`promote`): `kfp_ct.storage_uri`, the published copy that serves;
- on the registered model: `kfp_ct.champion_history`, a JSON list of {"version", "since"} in the order the versions
  became the champion (the last is the champion), which `rollback` walks back;
- on a version a person turned down (`reject`): `kfp_ct.rejected` (the reason) and `kfp_ct.rejected_at`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from kfp_ct.components._common.credentials import SECRET_NAME, environment

CHAMPION, CHALLENGER = "champion", "challenger"
BLESSED_TAG, RULE_TAG, EVALUATION_TAG = "kfp_ct.blessed", "kfp_ct.blessing_rule", "kfp_ct.evaluation"
STORAGE_TAG = "kfp_ct.storage_uri"
HISTORY_TAG = "kfp_ct.champion_history"
HISTORY_LIMIT = 200  # champions kept in the history tag (about 50 characters each; MLflow allows 100,000)
REJECTED_TAG, REJECTED_AT_TAG = "kfp_ct.rejected", "kfp_ct.rejected_at"
DEFAULT_DB = "mlflow.db"
LOCAL_RUN = "KFP_CT_LOCAL_RUN"  # set by kfp_ct.pipelines.local_run for the steps it runs


def resolve_uri(tracking_uri: str | None = None) -> str:
    """The tracking URI to use (see the module docstring); raises ValueError for a local one inside a pod."""
    from urllib.parse import urlparse

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    local = not uri or (uri != "databricks" and urlparse(uri).scheme.lower() in ("", "sqlite", "file"))
    if local and os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get(LOCAL_RUN):
        given = f"the tracking URI {uri} is a local file" if uri else "no tracking URI is set"
        raise ValueError(
            f"{given}, inside a Kubernetes pod: each pipeline step runs in a pod of its own, so a local MLflow "
            f"registry would not outlive this step and the next one could not find the versions registered here. "
            f"Point the pipeline parameter `tracking_uri` at a shared MLflow tracking server, or set the key "
            f"MLFLOW_TRACKING_URI of the Secret `{SECRET_NAME}` in the run's namespace (see cluster/ in kfp-ct)"
        )
    return uri or f"sqlite:///{os.path.abspath(DEFAULT_DB)}"


def without_credentials(uri: str) -> str:
    """`uri` without a user:password@ part, so that no secret lands in a model's metadata or a message."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _local_store(uri: str) -> str | None:
    """The local file or folder a sqlite or file-store URI names (None for a server or an in-memory database)."""
    if uri.startswith("sqlite:"):
        path = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else ""
        return path if path and path != ":memory:" else None
    if uri.startswith("file:"):
        from urllib.parse import urlparse

        return urlparse(uri).path
    return uri if "://" not in uri else None


REACH_TIMEOUT_S = 10


def check_registry(tracking_uri: str | None = None, *, create: bool = False) -> str:
    """Checks that the registry at the resolved URI exists and answers; returns the URI.

    A sqlite file or file-store folder that does not exist is an error (a mistyped URI would otherwise become a new,
    empty registry), unless `create` (a trainer's first run) and its folder exists. A server must answer one
    registry call within REACH_TIMEOUT_S, without MLflow's retries. Raises FileNotFoundError or ConnectionError.
    """
    uri = resolve_uri(tracking_uri)
    shown = without_credentials(uri)
    local = _local_store(uri)
    if local is not None and not os.path.exists(local):
        parent = os.path.dirname(os.path.abspath(local))
        if not create:
            raise FileNotFoundError(
                f"no MLflow registry at {shown}: {local} does not exist (a mistyped tracking_uri? only a "
                "trainer creates a registry)"
            )
        if not os.path.isdir(parent):
            raise FileNotFoundError(f"cannot create the MLflow registry {shown}: the folder {parent} does not exist")
        return uri
    overrides = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(REACH_TIMEOUT_S)}
    try:
        with environment(overrides):
            client(uri).search_registered_models(max_results=1)
    except Exception as err:
        raise ConnectionError(f"the MLflow registry at {shown} does not answer: {type(err).__name__}: {err}") from None
    return uri


def check_run(run_id: str, tracking_uri: str | None = None) -> None:
    """Checks that the MLflow run `run_id` is known at the resolved URI (the registry a model was trained with)."""
    try:
        client(tracking_uri).get_run(run_id)
    except Exception as err:
        if not _not_found(err):
            raise
        raise LookupError(
            f"the model's MLflow run {run_id} is not known to the registry at "
            f"{without_credentials(resolve_uri(tracking_uri))}: was it trained against another tracking_uri?"
        ) from None


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM (as a pod being stopped does). A BaseException,
    as KeyboardInterrupt is: no `except Exception` on the way swallows it."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises Terminated in the main thread, so `try/finally` and `with` blocks end (an
    MLflow run is marked FAILED) before the process exits; the previous handler is restored after. Outside the main
    thread it does nothing (Python delivers signals to the main thread only). A second SIGTERM is ignored while the
    cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the run's cleanup must not be interrupted again
        raise Terminated(f"terminated by signal {signum}")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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


def delete_version(model_name: str, version: str | int, tracking_uri: str | None = None) -> None:
    """Deletes one registered version (undoing a registration whose model was withdrawn)."""
    client(tracking_uri).delete_model_version(model_name, str(version))


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


class AliasError(LookupError):
    """An alias that cannot be resolved to a version, or whose version cannot be downloaded or loaded."""


def alias_tag(alias: str) -> str:
    """The registered model's tag that records the version the catalog last pointed `alias` at."""
    return f"kfp_ct.alias.{alias}"


def _registered_model(mlflow_client, model_name: str):
    """The registered model, or None when `model_name` is not registered."""
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_registered_model(model_name)
    except MlflowException as err:
        if _not_found(err):
            return None
        raise


def get_alias(model_name: str, alias: str, tracking_uri: str | None = None) -> str | None:
    """The version that `alias` points at now, or None (no such alias, or no such model)."""
    registered = _registered_model(client(tracking_uri), model_name)
    version = (registered.aliases or {}).get(alias) if registered is not None else None
    return None if version is None else str(version)


def resolve_alias(model_name: str, alias: str, tracking_uri: str | None = None) -> str | None:
    """The version `alias` points at, failing closed: None only when there is no such alias at all (the model is not
    registered, or it never had the alias); an alias whose version does not exist, or an alias the catalog set
    (see `set_alias`) that is gone, raises AliasError naming the alias and the version. MLflow drops an alias with
    the version it points at, so a deleted champion is told apart from no champion by the registered model's tag."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client(tracking_uri)
    registered = _registered_model(mlflow_client, model_name)
    if registered is None:
        return None
    version = (registered.aliases or {}).get(alias)
    if version is None:
        recorded = (registered.tags or {}).get(alias_tag(alias))
        if recorded is None:
            return None
        fate = "and was removed" if _version_exists(mlflow_client, model_name, recorded) else "which no longer exists"
        raise AliasError(
            f"the '{alias}' alias of '{model_name}' is gone: it pointed at version {recorded}, {fate}"
            f"; refusing to act as if there never was one (a first model). Point '{alias}' at the version that serves "
            f"(kfp_ct.components._common.tracking.promote), or delete the registered model's tag '{alias_tag(alias)}' "
            "to start over"
        )
    version = str(version)
    try:
        mlflow_client.get_model_version(model_name, version)
    except MlflowException as err:
        raise AliasError(
            f"the '{alias}' alias of '{model_name}' points at version {version}, which cannot be read: {err}"
        ) from err
    return version


def _version_exists(mlflow_client, model_name: str, version: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_model_version(model_name, str(version))
    except MlflowException as err:
        if _not_found(err):
            return False
        raise
    return True


def set_alias(model_name: str, alias: str, version: str | int, tracking_uri: str | None = None) -> str | None:
    """Points `alias` at `version` (moving it from wherever it was) and records it in the registered model's tag
    `alias_tag(alias)`, so that an alias lost with a deleted version is noticed (see `resolve_alias`); returns the
    version it pointed at before."""
    previous = get_alias(model_name, alias, tracking_uri)
    mlflow_client = client(tracking_uri)
    mlflow_client.set_registered_model_alias(model_name, alias, str(version))
    mlflow_client.set_registered_model_tag(model_name, alias_tag(alias), str(version))
    return previous


def clear_alias(model_name: str, alias: str, tracking_uri: str | None = None) -> None:
    """Removes `alias` and its tag `alias_tag(alias)`: the model has no such alias any more, on purpose (unlike an
    alias lost with its version, which `resolve_alias` refuses)."""
    mlflow_client = client(tracking_uri)
    if get_alias(model_name, alias, tracking_uri) is not None:
        mlflow_client.delete_registered_model_alias(model_name, alias)
    registered = _registered_model(mlflow_client, model_name)
    if registered is not None and alias_tag(alias) in (registered.tags or {}):
        mlflow_client.delete_registered_model_tag(model_name, alias_tag(alias))


def now_utc() -> str:
    """The current time, UTC, ISO 8601 to the second (the times the catalog records in tags)."""
    import datetime

    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def champion_history(model_name: str, tracking_uri: str | None = None) -> list[dict]:
    """The champions of `model_name` in the order they became the champion, the last being the champion: a list of
    {"version", "since"} (see the module docstring); empty when none was recorded. A tag that is not such a list
    raises ValueError naming it."""
    import json

    registered = _registered_model(client(tracking_uri), model_name)
    text = (registered.tags or {}).get(HISTORY_TAG) if registered is not None else None
    if text is None:
        return []
    try:
        history = json.loads(text)
        if not isinstance(history, list) or not all(isinstance(e, dict) and "version" in e for e in history):
            raise ValueError("not a list of {version, since}")
    except ValueError as err:
        raise ValueError(
            f"the tag '{HISTORY_TAG}' of '{model_name}' is not a champion history ({err}): {text[:200]}"
        ) from None
    return [{"version": str(e["version"]), "since": e.get("since")} for e in history]


def write_champion_history(model_name: str, history: list[dict], tracking_uri: str | None = None) -> None:
    """Replaces the registered model's champion history with `history` (its last HISTORY_LIMIT entries)."""
    import json

    text = json.dumps(history[-HISTORY_LIMIT:], separators=(",", ":"))
    client(tracking_uri).set_registered_model_tag(model_name, HISTORY_TAG, text)


def promote(
    model_name: str,
    version: str | int,
    alias: str = CHAMPION,
    tracking_uri: str | None = None,
    storage_uri: str | None = None,
) -> str | None:
    """Makes `version` the `alias` (champion by default); returns the version that held it before.

    A new champion is appended to the champion history (a champion that predates the history is recorded first, so
    that it can be rolled back to), and `storage_uri`, the published copy that serves it, is recorded on the version.
    """
    mlflow_client = client(tracking_uri)
    mlflow_client.get_model_version(model_name, str(version))  # fails clearly when the version does not exist
    if alias != CHAMPION:
        return set_alias(model_name, alias, version, tracking_uri)
    history = champion_history(model_name, tracking_uri)
    previous = set_alias(model_name, alias, version, tracking_uri)
    if storage_uri:
        mlflow_client.set_model_version_tag(model_name, str(version), STORAGE_TAG, storage_uri)
    if previous is not None and (not history or history[-1]["version"] != previous):
        history.append({"version": previous, "since": None})
    if not history or history[-1]["version"] != str(version):
        history.append({"version": str(version), "since": now_utc()})
        write_champion_history(model_name, history, tracking_uri)
    return previous


def record_evaluation(
    model_name: str,
    version: str | int,
    *,
    blessed: bool,
    rule: str,
    metrics: dict,
    checks: list[str],
    champion_version: str | None,
    tracking_uri: str | None = None,
) -> None:
    """Records evaluate's verdict on a registered version: whether it was blessed, the rule that decided, and (JSON)
    its test metrics, the champion it was compared with and each check's verdict (see the module docstring)."""
    import json
    import math

    evaluation = {
        "metrics": {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()},
        "champion_version": champion_version,
        "checks": checks,
        "evaluated_at": now_utc(),
    }
    mlflow_client = client(tracking_uri)
    for key, value in (
        (EVALUATION_TAG, json.dumps(evaluation)),
        (RULE_TAG, rule),
        (BLESSED_TAG, "true" if blessed else "false"),
    ):
        mlflow_client.set_model_version_tag(model_name, str(version), key, value)


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
    directory when None, which the caller removes); None only when there is no champion at all (see
    `resolve_alias`). A champion that cannot be resolved or downloaded raises AliasError naming the alias and the
    version."""
    version = resolve_alias(model_name, alias, tracking_uri)
    if version is None:
        return None
    try:
        return version, download_version(model_name, version, dst, tracking_uri)
    except Exception as err:
        raise AliasError(
            f"the '{alias}' alias of '{model_name}' points at version {version}, which cannot be downloaded: "
            f"{type(err).__name__}: {err}"
        ) from err


def _quote(value: str) -> str:
    return str(value).replace("'", "\\'")
