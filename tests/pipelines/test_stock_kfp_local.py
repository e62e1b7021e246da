"""Every compiled component in a user's own pipeline, under an unpatched kfp.local (SubprocessRunner with
use_venv=False), with its required arguments only (tune also with three trials): what a user gets from
`load_component_from_file("compiled/components/...")`. `kfp_ct.pipelines.local_run` patches kfp.local in its
process, so the pipeline runs in a fresh one."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.local
COMPILED = Path(__file__).resolve().parents[2] / "compiled" / "components"

USERS_PIPELINE = """
import json, sys
from kfp import components, dsl, local
from kfp.local import executor_output_utils

assert not getattr(executor_output_utils.pb2_value_to_python, "reads_unset_as_none", False), "kfp.local is patched"
compiled, source, root = sys.argv[1:]
c = {name: components.load_component_from_file(f"{compiled}/{name}.yaml") for name in (
    "ingest", "validate", "featurize", "train_sklearn", "train_torch", "train_keras", "tune", "evaluate", "push",
    "reference_data", "monitor_drift")}

@dsl.pipeline(name="users-pipeline")
def users_pipeline(uri: str) -> bool:
    data = c["ingest"](source_uri=uri)
    checked = c["validate"](dataset=data.outputs["dataset"], target_column="class")
    features = c["featurize"](dataset=data.outputs["dataset"], target_column="class").after(checked)
    split = dict(train=features.outputs["train"], featurizer=features.outputs["featurizer"], target_column="class")
    c["tune"](task="classification", max_trial_count=3, **split)  # three trials: the default twelve take minutes
    for trainer in ("train_torch", "train_keras"):
        c[trainer](task="classification", **split)
    model = c["train_sklearn"](task="classification", **split).outputs["model"]
    name = "kfp-ct-model"  # the trainers' default
    verdict = c["evaluate"](model=model, test=features.outputs["test"], target_column="class", model_name=name)
    pushed = c["push"](model=model, model_name=name).after(verdict)
    reference = c["reference_data"](model_name=name).after(pushed)
    drift = c["monitor_drift"](reference=reference.outputs["reference"], current=features.outputs["test"])
    return drift.outputs["Output"]

local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root)
print("RESULT", json.dumps(users_pipeline(uri=source).output))
"""


def test_every_compiled_component_runs_with_its_required_arguments_only(shared_data, tmp_path):
    source = tmp_path / "elec2.csv"
    pd.read_csv(shared_data / "elec2" / "elec2.csv", nrows=800).to_csv(source, index=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "KFP_CT_"))}  # the defaults only
    done = subprocess.run(
        [sys.executable, "-c", USERS_PIPELINE, str(COMPILED), str(source), str(tmp_path / "root")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
    [result] = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert json.loads(result.removeprefix("RESULT ")) in (True, False)
    ran = {path.parent.name for path in (tmp_path / "root").rglob("executor_output.json")}
    assert ran == {
        "ingest", "validate", "featurize", "tune", "train-torch", "train-keras", "train-sklearn", "evaluate", "push",
        "reference-data", "monitor-drift",
    }  # fmt: skip
