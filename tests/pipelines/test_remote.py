"""`kfp-ct submit` and `kfp-ct schedule` through the real kfp.Client, against the loopback stand-in for the KFP API
server's REST endpoints (kfp_standin.py): the requests must deserialize into kfp_server_api's models with the fields a
recurring drift monitor needs, carry the credential in the Authorization header, and pass the API server's checks
of the runtime parameters."""

from __future__ import annotations

import json
from pathlib import Path

import kfp_server_api
import kfp_standin
import pytest
import yaml
from kfp_standin import IN_CLUSTER_HOST, IN_CLUSTER_PORT, PROFILE_NAMESPACE

from kfp_ct.pipelines import cli, remote

kfp_api, kfp_context, in_cluster = kfp_standin.kfp_api, kfp_standin.kfp_context, kfp_standin.in_cluster  # fixtures


def _posted(requests, endpoint: str, model: str):
    bodies = [r.body for r in requests if r.method == "POST" and r.path.startswith(endpoint)]
    assert len(bodies) == 1, f"expected one POST to {endpoint}, got {len(bodies)}"
    api = kfp_server_api.ApiClient()
    return api._ApiClient__deserialize(bodies[0], model), bodies[0]


def test_schedule_creates_a_recurring_run_one_at_a_time_without_catchup(kfp_api, monkeypatch):
    host, requests = kfp_api
    monkeypatch.setenv("KFP_TOKEN", "token-from-the-environment")
    cli.main(
        [
            "schedule",
            "--host",
            host,
            "--cron",
            "0 0 2 * * *",
            "--param",
            "current_uri=gs://b/new.csv",
            "--param",
            "target_column=label",
        ]
    )
    recurring, raw = _posted(requests, "/apis/v2beta1/recurringruns", "V2beta1RecurringRun")
    assert recurring.trigger.cron_schedule.cron == "0 0 2 * * *"
    assert int(recurring.max_concurrency) == 1 and recurring.no_catchup is True
    assert recurring.mode == "ENABLE" and recurring.experiment_id == "exp-1"
    # with kfp-kubernetes settings (the Secret) the client sends the pipeline and platform specs together
    spec = recurring.pipeline_spec["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "continuous-training-pipeline"
    executors = recurring.pipeline_spec["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors and all("secretAsVolume" in executor for executor in executors.values()), executors
    assert recurring.runtime_config.parameters["current_uri"] == "gs://b/new.csv"
    # the credential travels in the Authorization header only, never in the pipeline or its parameters
    auth = [r.authorization for r in requests]
    assert all(value == "Bearer token-from-the-environment" for value in auth), auth
    assert "token-from-the-environment" not in json.dumps(raw)


def test_submit_starts_one_run_with_typed_parameters(kfp_api):
    host, requests = kfp_api
    cli.main(
        [
            "submit",
            "data_pipeline",
            "--host",
            host,
            "--param",
            "source_uri=gs://b/data.csv",
            "--param",
            "target_column=label",
            "--param",
            "test_fraction=0.3",
            "--run-name",
            "nightly",
        ]
    )
    run, _ = _posted(requests, "/apis/v2beta1/runs", "V2beta1Run")
    assert run.display_name == "nightly" and run.experiment_id == "exp-1"
    assert run.runtime_config.parameters == {
        "source_uri": "gs://b/data.csv",
        "target_column": "label",
        "test_fraction": 0.3,
    }
    assert run.pipeline_spec["pipeline_spec"]["pipelineInfo"]["name"] == "data-pipeline"


def test_submit_without_a_token_sends_no_authorization(kfp_api):
    host, requests = kfp_api
    cli.main(
        [
            "submit",
            "data_pipeline",
            "--host",
            host,
            "--param",
            "source_uri=gs://b/data.csv",
            "--param",
            "target_column=label",
        ]
    )
    assert requests and all(r.authorization is None for r in requests)


def test_with_a_host_the_token_file_of_kf_pipelines_sa_token_path_is_the_bearer(kfp_api, tmp_path, monkeypatch):
    host, requests = kfp_api
    token = tmp_path / "token"
    token.write_text("projected-service-account-token\n")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    cli.main(
        [
            "submit",
            "data_pipeline",
            "--host",
            host,
            "--param",
            "source_uri=gs://b/data.csv",
            "--param",
            "target_column=label",
        ]
    )
    assert [r.path.split("?")[0] for r in requests if r.method == "POST"] == [
        "/apis/v2beta1/experiments",
        "/apis/v2beta1/runs",
    ]
    assert all(r.authorization == "Bearer projected-service-account-token" for r in requests), requests


@pytest.mark.parametrize("content", [None, ""])
def test_an_unreadable_or_empty_token_file_is_named_before_any_request(kfp_api, tmp_path, monkeypatch, content):
    host, requests = kfp_api
    token = tmp_path / "token"
    if content is not None:
        token.write_text(content)
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    with pytest.raises(SystemExit, match=f"KF_PIPELINES_SA_TOKEN_PATH={token}"):
        cli.main(
            [
                "submit",
                "data_pipeline",
                "--host",
                host,
                "--param",
                "source_uri=gs://b/data.csv",
                "--param",
                "target_column=label",
            ]
        )
    assert requests == []


def test_in_a_pod_without_host_the_client_reaches_ml_pipeline_with_the_service_account_token(in_cluster):
    """kfp.Client() in a Kubeflow notebook: the ml-pipeline service's cluster DNS name, the projected token as the
    bearer, and (multi-user) the pod's namespace as the user namespace of the experiment."""
    _, requests = in_cluster
    cli.main(
        ["schedule", "--cron", "0 0 2 * * *", "--param", "current_uri=gs://b/new.csv", "--param", "target_column=label"]
    )
    assert requests and all(r.host == f"{IN_CLUSTER_HOST}:{IN_CLUSTER_PORT}" for r in requests), requests
    assert all(r.authorization == "Bearer projected-kfp-token" for r in requests), requests
    experiment, _ = _posted(requests, "/apis/v2beta1/experiments", "V2beta1Experiment")
    assert experiment.namespace == PROFILE_NAMESPACE
    recurring, _ = _posted(requests, "/apis/v2beta1/recurringruns", "V2beta1RecurringRun")
    assert recurring.experiment_id == "exp-1"


def test_the_namespace_option_names_the_experiments_user_namespace(in_cluster):
    _, requests = in_cluster
    cli.main(
        [
            "submit",
            "data_pipeline",
            "--namespace",
            "team-a",
            "--param",
            "source_uri=gs://b/data.csv",
            "--param",
            "target_column=label",
        ]
    )
    experiment, _ = _posted(requests, "/apis/v2beta1/experiments", "V2beta1Experiment")
    assert experiment.namespace == "team-a"


def test_without_host_outside_a_cluster_the_error_says_what_to_give(kfp_api):
    _, requests = kfp_api
    with pytest.raises(SystemExit, match="no KFP host"):
        cli.main(["submit", "data_pipeline", "--param", "source_uri=gs://b/data.csv", "--param", "target_column=label"])
    assert requests == []


def test_the_api_server_refuses_a_null_number_and_the_cli_says_why(kfp_api):
    """KFP 2.5's API server checks each runtime parameter against its declared type: JSON null is no number."""
    host, requests = kfp_api
    given = ["source_uri=x", "target_column=label", "test_fraction=null"]
    with pytest.raises(SystemExit, match="400.*input parameter test_fraction requires type double or integer"):
        cli.main(["submit", "data_pipeline", "--host", host, *[f"--param={pair}" for pair in given]])
    assert [r.path for r in requests if r.method == "POST"][-1].startswith("/apis/v2beta1/runs")


def test_the_api_server_refuses_a_run_without_a_required_parameter(kfp_api):
    host, _ = kfp_api
    with pytest.raises(SystemExit, match="parameter target_column is not optional"):
        cli.main(["submit", "data_pipeline", "--host", host, "--param", "source_uri=x"])


@pytest.mark.parametrize("cron", ["0 2 * * *", "* * *", "0 0 0 2 * * *"])
def test_cron_needs_kfp_six_fields(cron):
    with pytest.raises(ValueError, match="six"):
        remote.check_cron(cron)


def test_unknown_parameter_is_named(kfp_api):
    host, _ = kfp_api
    with pytest.raises(SystemExit, match="no parameter 'sourceuri'"):
        cli.main(["submit", "data_pipeline", "--host", host, "--param", "sourceuri=x"])


def test_compiled_pipelines_take_credentials_from_a_secret_only():
    from kfp_ct.components._common.credentials import MOUNT_PATH, SECRET_NAME
    from kfp_ct.components._common.storage import MINIO_SECRET, MINIO_SECRET_DIR

    compiled = Path(__file__).resolve().parents[2] / "compiled"
    for path in compiled.glob("*.yaml"):
        documents = list(yaml.safe_load_all(path.read_text()))
        parameters = documents[0]["root"]["inputDefinitions"].get("parameters", {})
        assert not [p for p in parameters if any(w in p.lower() for w in ("token", "password", "secret", "key"))]
        executors = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(documents) > 1 else {}
        assert executors, f"{path.name}: no step gets the credentials"
        for executor in executors.values():
            assert "secretAsEnv" not in executor  # optional keys there need KFP 2.15
            mounted = {s["secretNameParameter"]["runtimeValue"]["constant"]: s for s in executor["secretAsVolume"]}
            assert set(mounted) == {SECRET_NAME, MINIO_SECRET}  # ours, and KFP's MinIO keys for minio:// artifacts
            assert mounted[SECRET_NAME]["mountPath"] == MOUNT_PATH
            assert mounted[MINIO_SECRET]["mountPath"] == MINIO_SECRET_DIR
            assert all(secret["optional"] is True for secret in mounted.values())


@pytest.mark.parametrize("pipeline", ["training_pipeline", "continuous_training_pipeline"])
def test_steps_that_load_a_torch_or_keras_model_run_in_the_gpu_image(pipeline):
    """The component image holds neither torch nor TensorFlow: evaluate and push of a torch or Keras model run in
    the GPU image (on CPU); the scikit-learn branch keeps the component image."""
    import re

    from kfp_ct.components._common.images import GPU_IMAGE, IMAGE

    path = Path(__file__).resolve().parents[2] / "compiled" / f"{pipeline}.yaml"
    spec = next(yaml.safe_load_all(path.read_text()))
    components, executors = spec["components"], spec["deploymentSpec"]["executors"]

    def leaves(name):  # (step, image) of every container task under the DAG component `name`
        for key, task in components[name]["dag"]["tasks"].items():
            ref = task["componentRef"]["name"]
            if "dag" in components[ref]:
                yield from leaves(ref)
            else:
                yield re.sub(r"-\d+$", "", key), executors[components[ref]["executorLabel"]]["container"]["image"]

    seen = {}
    for name, component in components.items():
        trainers = [re.sub(r"-\d+$", "", key) for key in component.get("dag", {}).get("tasks", {})]
        trainers = [t for t in trainers if t.startswith("train-") and t != "train-evaluate-push"]
        for trainer in trainers:
            images = {image for step, image in leaves(name) if step in ("evaluate", "push")}
            seen[trainer] = images
            assert images == ({IMAGE} if trainer == "train-sklearn" else {GPU_IMAGE}), (trainer, images)
    assert set(seen) == {"train-sklearn", "train-torch", "train-keras"}
