"""The serving image serves a model trained by the scikit-learn trainer's core: the container (host network) binds
a free loopback port; V1 and V2 answers equal the model's own predictions, as outside the container
(tests/push/test_model_server.py)."""

import json
import shutil
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
from loopback import free_port

pytestmark = pytest.mark.containers
NAME = "elec2"
ROWS = 3000


def post(url: str, body) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.fixture(scope="module")
def model_dir(shared_data, tmp_path_factory):
    """An elec2 model from train_sklearn's core, copied where the image's user (uid 1000) may read it, as KServe's
    storage initializer leaves a model in /mnt/models."""
    from kfp_ct.components._common import datasets
    from kfp_ct.components.featurize.core import featurize
    from kfp_ct.components.train_sklearn.core import train_sklearn

    out = tmp_path_factory.mktemp("served")
    frame = pd.read_csv(shared_data / "elec2" / "elec2.csv", nrows=ROWS)
    datasets.write_frame(frame, out / "data.parquet", "elec2.csv")
    featurize(
        dataset_path=str(out / "data.parquet"),
        target_column="class",
        train_path=str(out / "train.parquet"),
        test_path=str(out / "test.parquet"),
        featurizer_path=str(out / "featurizer"),
        seed=0,
    )
    train_sklearn(
        train_path=str(out / "train.parquet"),
        featurizer_path=str(out / "featurizer"),
        model_path=str(out / "model"),
        model_name="elec2-serving-image",
        hyperparameters={"max_iter": 20},
        seed=0,
        tracking_uri=f"sqlite:///{out / 'mlflow.db'}",
    )
    mounted = out / "mnt-models"
    shutil.copytree(out / "model", mounted)
    for path in [mounted, *mounted.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return {"mounted": mounted, "model": out / "model", "test": out / "test.parquet"}


@pytest.fixture(scope="module")
def served(docker_client, serving_image, model_dir):
    """The serving image's entrypoint as KServe runs it (--model_name, the model at /mnt/models), on loopback."""
    port = free_port()
    container = docker_client.containers.run(
        serving_image,
        ["--model_name", NAME, "--http_port", str(port), "--host", "127.0.0.1", "--enable_latency_logging", "false"],
        volumes={str(model_dir["mounted"]): {"bind": "/mnt/models", "mode": "ro"}},
        network_mode="host",
        detach=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            container.reload()
            if container.status not in ("created", "running"):
                raise RuntimeError(f"the serving container exited:\n{container.logs().decode()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{base}/v2/models/{NAME}/ready", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not ready in 300 s:\n{container.logs().decode()[-4000:]}") from None
                time.sleep(0.5)
        yield base
    finally:
        container.remove(force=True)


@pytest.fixture(scope="module")
def rows(model_dir):
    from kfp_ct.components._common.model import load_model

    model = load_model(str(model_dir["model"]))
    names = [name for name, _ in model.input_columns]
    frame = pd.read_parquet(model_dir["test"]).head(200)[names]
    return {
        "model": model,
        "names": names,
        "records": json.loads(frame.to_json(orient="records")),
        "labels": model.predict(frame).tolist(),
        "proba": model.predict_proba(frame),
    }


def test_v1_and_v2_answer_as_outside_the_container(served, rows):
    from kfp_ct.components.push.core import v2_answer, v2_request

    status, v1 = post(f"{served}/v1/models/{NAME}:predict", {"instances": rows["records"]})
    assert status == 200, v1
    assert v1["predictions"] == rows["labels"]
    np.testing.assert_allclose(v1["probabilities"], rows["proba"], rtol=0, atol=1e-12)

    as_rows = [[record[name] for name in rows["names"]] for record in rows["records"]]
    assert post(f"{served}/v1/models/{NAME}:predict", {"instances": as_rows}) == (200, v1)

    status, v2 = post(f"{served}/v2/models/{NAME}/infer", v2_request(rows["records"], rows["model"].input_columns))
    assert status == 200, v2
    answer = v2_answer(v2)
    assert answer["predictions"] == rows["labels"]
    np.testing.assert_allclose(answer["probabilities"], rows["proba"], rtol=0, atol=1e-12)


def test_a_bad_payload_is_answered_400_and_serving_goes_on(served, rows):
    record = {k: v for k, v in rows["records"][0].items() if k != rows["names"][0]}
    status, body = post(f"{served}/v1/models/{NAME}:predict", {"instances": [record]})
    assert status == 400 and repr(rows["names"][0]) in json.dumps(body), body
    status, body = post(f"{served}/v1/models/{NAME}:predict", {"instances": rows["records"][:1]})
    assert status == 200 and body["predictions"] == rows["labels"][:1]
