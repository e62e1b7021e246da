"""`kfp-ct submit` and `kfp-ct schedule` through the real kfp.Client, against a loopback stand-in for the KFP API
server's REST endpoints (no KFP server runs here): the requests must deserialize into kfp_server_api's models with
the fields a recurring drift monitor needs."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import kfp_server_api
import pytest
import yaml

from kfp_ct.pipelines import cli, remote


class KfpApi(BaseHTTPRequestHandler):
    """Answers the v2beta1 endpoints kfp.Client uses to start runs, and records each request."""

    requests: list = []

    def _reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.requests.append(("GET", self.path, None, self.headers.get("Authorization")))
        self._reply({"experiments": []} if self.path.startswith("/apis/v2beta1/experiments") else {})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(("POST", self.path, body, self.headers.get("Authorization")))
        kind = self.path.split("?")[0].rsplit("/", 1)[-1]
        ids = {
            "experiments": {"experiment_id": "exp-1"},
            "runs": {"run_id": "run-1"},
            "recurringruns": {"recurring_run_id": "rec-1"},
        }
        self._reply({**body, **ids[kind]})

    def log_message(self, *args):
        pass


@pytest.fixture
def kfp_api():
    KfpApi.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), KfpApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", KfpApi.requests
    server.shutdown()


def _posted(requests, endpoint: str, model: str):
    bodies = [body for method, path, body, _ in requests if method == "POST" and path.startswith(endpoint)]
    assert len(bodies) == 1, f"expected one POST to {endpoint}, got {len(bodies)}"
    api = kfp_server_api.ApiClient()
    return api._ApiClient__deserialize(bodies[0], model), bodies[0]


def test_schedule_creates_a_recurring_run_one_at_a_time_without_catchup(kfp_api, monkeypatch):
    host, requests = kfp_api
    monkeypatch.setenv("KFP_TOKEN", "token-from-the-environment")
    cli.main(["schedule", "--host", host, "--cron", "0 0 2 * * *", "--param", "current_uri=gs://b/new.csv"])
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
    auth = [authorization for _, _, _, authorization in requests]
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

    compiled = Path(__file__).resolve().parents[2] / "compiled"
    for path in compiled.glob("*.yaml"):
        documents = list(yaml.safe_load_all(path.read_text()))
        parameters = documents[0]["root"]["inputDefinitions"].get("parameters", {})
        assert not [p for p in parameters if any(w in p.lower() for w in ("token", "password", "secret", "key"))]
        executors = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(documents) > 1 else {}
        assert executors, f"{path.name}: no step gets the credentials"
        for executor in executors.values():
            assert "secretAsEnv" not in executor  # optional keys there need KFP 2.15
            [secret] = executor["secretAsVolume"]
            assert secret["secretNameParameter"]["runtimeValue"]["constant"] == SECRET_NAME
            assert secret["mountPath"] == MOUNT_PATH and secret["optional"] is True


@pytest.mark.parametrize("pipeline", ["training_pipeline", "continuous_training_pipeline"])
def test_steps_that_load_a_torch_or_keras_model_run_in_the_gpu_image(pipeline):
    """The component image holds neither torch nor TensorFlow: evaluate and push of a torch or Keras model run in
    the GPU image (on CPU); the scikit-learn branch keeps the component image."""
    import re

    from kfp_ct.components._image import GPU_IMAGE, IMAGE

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
