"""The pipelines check their parameters first: preflight is the first step and every other step runs after it, the
CLI runs the same checks before it starts or submits anything, and a run whose parameters are bad changes nothing
in the registry. Read-only steps carry a retry policy; the trainers, tune and push do not."""

from __future__ import annotations

import os

import pytest

from kfp_ct.components.preflight.core import FRAMEWORKS
from kfp_ct.pipelines import PIPELINES, cli
from kfp_ct.pipelines.local_run import run_local
from kfp_ct.pipelines.training import TRAINERS

RETRIED = {"preflight", "ingest", "validate", "featurize", "reference-data", "monitor-drift", "evaluate"}
NEVER_RETRIED = {"train-sklearn", "train-torch", "train-keras", "tune", "push"}


def _tasks(pipeline):
    """(dag name, task name, task spec) of every task, sub-DAGs included."""
    spec = pipeline.pipeline_spec
    yield from (("root", name, task) for name, task in spec.root.dag.tasks.items())
    for dag_name, component in spec.components.items():
        if component.HasField("dag"):
            yield from ((dag_name, name, task) for name, task in component.dag.tasks.items())


@pytest.mark.parametrize("name", ["training_pipeline", "continuous_training_pipeline"])
def test_every_step_runs_after_preflight(name):
    root = PIPELINES[name].pipeline_spec.root.dag.tasks
    assert "preflight" in root and not root["preflight"].dependent_tasks
    after = {"preflight"}
    changed = True
    while changed:  # the tasks that (transitively) wait for preflight
        changed = False
        for task_name, task in root.items():
            if task_name not in after and set(task.dependent_tasks) & after:
                after.add(task_name)
                changed = True
    assert after == set(root), f"not after preflight: {set(root) - after}"


@pytest.mark.parametrize("name", ["training_pipeline", "continuous_training_pipeline"])
def test_read_only_steps_are_retried_with_backoff_and_writers_are_not(name):
    seen = set()
    for _, task_name, task in _tasks(PIPELINES[name]):
        component = task.component_ref.name.removeprefix("comp-")
        base = next((b for b in RETRIED | NEVER_RETRIED if component == b or component.startswith(f"{b}-")), None)
        if base is None:
            continue
        seen.add(base)
        if base in RETRIED:
            policy = task.retry_policy
            assert policy.max_retry_count == 2, task_name
            assert policy.backoff_duration.seconds == 30 and policy.backoff_factor == 2, task_name
            assert policy.backoff_factor == int(policy.backoff_factor)  # backend 2.5 truncates it to an integer
        else:
            assert not task.HasField("retry_policy"), task_name
    assert {"preflight", "ingest", "evaluate", "push", "train-sklearn"} <= seen


def test_preflight_knows_every_trainer():
    assert set(FRAMEWORKS) == set(TRAINERS)


@pytest.mark.parametrize(
    "params, message",
    [
        (['thresholds={"rmse": {"max": 1}}'], "unknown metric 'rmse' for classification"),
        (["model_name=../../etc"], "'../../etc' cannot name an InferenceService"),
        (["source_uri=ftp://host/x.csv"], "unsupported scheme 'ftp'"),
    ],
)
@pytest.mark.parametrize("command", ["run", "submit"])
def test_the_cli_checks_before_it_runs_or_submits(tmp_path, monkeypatch, params, message, command):
    monkeypatch.chdir(tmp_path)
    args = [command, "training_pipeline", "--param", "source_uri=data.csv", "--param", "target_column=class"]
    args += [item for param in params for item in ("--param", param)]
    args += ["--root", str(tmp_path / "runs")] if command == "run" else ["--host", "http://127.0.0.1:9"]
    with pytest.raises(SystemExit, match="preflight found 1 problem") as err:
        cli.main(args)
    assert message in str(err.value)
    assert not (tmp_path / "runs").exists()


def test_the_cli_refuses_a_mistyped_registry_for_a_local_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = f"sqlite:///{tmp_path / 'mlfow.db'}"
    with pytest.raises(SystemExit, match="does not exist"):
        cli.main(
            [
                "run",
                "continuous_training_pipeline",
                "--param",
                "current_uri=data.csv",
                "--param",
                "target_column=class",
                "--param",
                f"tracking_uri={missing}",
            ]
        )
    assert os.listdir(tmp_path) == []


@pytest.mark.local
@pytest.mark.integration
def test_a_training_run_with_a_bad_threshold_registers_nothing(kfp_local, shared_data, mlflow_server, tmp_path):
    """The whole pipeline under kfp.local against a real MLflow server: preflight fails first, so no experiment,
    run, model, version or alias appears, and nothing is published."""
    from kfp_ct.components._common import tracking

    client = tracking.client(mlflow_server)

    def state():
        return (
            sorted(e.name for e in client.search_experiments()),
            sorted((m.name, dict(m.aliases)) for m in client.search_registered_models()),
            sorted((v.name, v.version) for v in client.search_model_versions()),
        )

    before = state()
    with pytest.raises(RuntimeError, match="preflight"):
        run_local(
            PIPELINES["training_pipeline"],
            {
                "source_uri": str(shared_data / "elec2" / "elec2.csv"),
                "target_column": "class",
                "model_name": "elec2-preflight",
                "thresholds": {"rmse": {"max": 1.0}},
                "tracking_uri": mlflow_server,
                "storage_uri": str(tmp_path / "store"),
            },
            kfp_local,
        )
    assert state() == before
    assert not (tmp_path / "store").exists()
    assert not list(kfp_local.rglob("ingest"))  # nothing ran after preflight
