"""The Katib backend: Experiments built from the typed kubeflow-katib-api models, validated against Katib's own
v1beta1 schema, the committed manifests, and the submit-wait-read logic against a fake CustomObjectsApi that answers
as Katib does (no cluster runs here)."""

import copy
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kfp_ct.components.tune import core, defaults, katib, trial
from kfp_ct.components.tune.results import FAILED, SUCCEEDED, parse_metrics
from kfp_ct.components.tune.settings import check_settings
from kfp_ct.components.tune.space import parse_search_space, parse_value

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO.parent / "shared" / "schemas" / "katib"
SWAGGER = str(SCHEMAS / "katib-v1beta1-swagger.json")
TRAINERS = ("sklearn", "torch", "keras")


SEARCH_SETTINGS = {
    "parameters",
    "objective_metric_name",
    "objective_type",
    "algorithm",
    "objective_goal",
    "max_trial_count",
    "parallel_trial_count",
    "max_failed_trial_count",
    "early_stopping",
    "seed",
}


def sklearn_experiment(**overrides):
    search = {
        "parameters": parse_search_space(defaults.default_search_space("sklearn")),
        "objective_metric_name": "validation-roc_auc",
        **{key: overrides.pop(key) for key in SEARCH_SETTINGS & set(overrides)},
    }
    settings = dict(
        name="kfp-ct-sklearn-test",
        trainer="sklearn",
        settings=check_settings(local=False, **search),
        train_uri="gs://bucket/train.parquet",
        featurizer_uri="gs://bucket/featurizer",
        target_column="class",
        task="classification",
        options={"estimator": "hist_gradient_boosting"},
        hyperparameters={"max_iter": 10},
        additional_metric_names=defaults.additional_metric_names("sklearn", "classification", "validation-roc_auc"),
    )
    settings.update(overrides)
    return katib.experiment_dict(katib.build_experiment(**settings))


@pytest.mark.parametrize("trainer", TRAINERS)
def test_each_trainers_experiment_validates_against_katibs_schema(trainer):
    body = katib.manifest_experiment(trainer)
    katib.validate_experiment(body, SWAGGER)
    # and it reads back into the typed models unchanged
    from kubeflow_katib_api.models import V1beta1Experiment

    assert V1beta1Experiment.from_dict(body).to_dict() == body
    container = body["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:3] == ["python", "-m", "kfp_ct.components.tune.trial"]
    from kfp_ct.components._common.images import GPU_IMAGE, IMAGE

    assert container["image"] == (IMAGE if trainer == "sklearn" else GPU_IMAGE)
    names = [p["name"] for p in body["spec"]["parameters"]]
    trial.check_trainer(trainer, defaults.default_options(trainer)).check_names(names)
    for name in names:
        assert f"{name}=${{trialParameters.{name}}}" in container["command"]


def test_katibs_own_example_validates_and_mistakes_do_not():
    example = yaml.safe_load((SCHEMAS / "example-experiment-random-job-trial.yaml").read_text())
    katib.validate_experiment(example, SWAGGER)
    broken = copy.deepcopy(example)
    broken["spec"]["parallelTrialcount"] = 3
    broken["spec"]["parameters"][0]["feasibleSpace"]["min"] = "0.9"
    broken["spec"]["parameters"][1]["parameterType"] = "float"
    broken["spec"]["objective"]["goal"] = "high"
    broken["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"].append(
        "--extra=${trialParameters.unknown}"
    )
    broken["spec"]["trialTemplate"]["trialParameters"][1]["reference"] = "beta"
    with pytest.raises(ValueError) as err:
        katib.validate_experiment(broken, SWAGGER)
    message = str(err.value)
    for expected in (
        "'parallelTrialcount' was unexpected",
        "'high' is not of type 'number'",
        "feasibleSpace.min (0.9) is above max (0.05)",
        "unknown parameterType 'float'",
        "${trialParameters.unknown} in the trialSpec is not a declared trialParameter",
        "trialParameter 'momentum' references 'beta', which is not in spec.parameters",
    ):
        assert expected in message, message


def test_the_packaged_schema_is_katibs():
    assert gzip.decompress(katib.PACKAGED_SCHEMA.read_bytes()) == Path(SWAGGER).read_bytes()


def test_committed_manifests_are_not_stale(tmp_path):
    committed = REPO / "katib"
    for trainer in TRAINERS:
        path = committed / f"{trainer}-experiment.yaml"
        assert path.is_file(), f"{path} is missing: run make manifests"
        assert path.read_text() == katib.render_manifest(trainer), f"{path} is stale: run make manifests"
    written = katib.write_manifests(tmp_path)
    assert [p.name for p in written] == [f"{t}-experiment.yaml" for t in TRAINERS]
    readme = (committed / "README.md").read_text()
    assert "kubectl apply -f katib/sklearn-experiment.yaml" in readme


def test_builder_refuses_what_katib_would():
    with pytest.raises(ValueError, match="needs Katib algorithm settings"):
        sklearn_experiment(algorithm="hyperband")
    with pytest.raises(ValueError, match="neural architecture search"):
        sklearn_experiment(algorithm="enas")
    with pytest.raises(ValueError, match="Experiment name 'Tune_1' must be"):
        sklearn_experiment(name="Tune_1")
    with pytest.raises(ValueError, match="cmaes needs two or more continuous"):
        sklearn_experiment(
            algorithm="cmaes",
            parameters=parse_search_space(
                [
                    {
                        "name": "max_features",
                        "parameterType": "categorical",
                        "feasibleSpace": {"list": ["sqrt", "1.0"]},
                    },
                    {
                        "name": "learning_rate",
                        "parameterType": "double",
                        "feasibleSpace": {"min": "0.01", "max": "0.3"},
                    },
                ]
            ),
        )


def test_experiment_carries_the_search_settings():
    body = sklearn_experiment(
        algorithm="cmaes",
        objective_goal=0.99,
        max_trial_count=20,
        parallel_trial_count=4,
        max_failed_trial_count=2,
        seed=7,
        early_stopping={"algorithmName": "medianstop", "algorithmSettings": [{"name": "start_step", "value": "2"}]},
    )
    spec = body["spec"]
    assert spec["algorithm"] == {
        "algorithmName": "cmaes",
        "algorithmSettings": [{"name": "random_state", "value": "7"}],
    }
    assert spec["earlyStopping"] == {
        "algorithmName": "medianstop",
        "algorithmSettings": [{"name": "min_trials_required", "value": "3"}, {"name": "start_step", "value": "2"}],
    }
    assert (spec["maxTrialCount"], spec["parallelTrialCount"], spec["maxFailedTrialCount"]) == (20, 4, 2)
    assert spec["objective"]["goal"] == 0.99
    assert spec["metricsCollectorSpec"] == {"collector": {"kind": "StdOut"}}
    command = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--hyperparameters") + 1] == '{"max_iter": 10}'
    assert "--param-type" in command and "learning_rate=double" in command
    katib.validate_experiment(body, SWAGGER)


# --- submit, wait, read ----------------------------------------------------------------------------------------


class FakeCustomObjectsApi:
    """The two CustomObjectsApi methods the backend uses; `get` answers with Katib-shaped status that moves from
    Created through Running to `final` (a status dict) as it is polled."""

    def __init__(self, final, polls_before_done=2):
        self.final, self.polls, self.created, self.calls = final, polls_before_done, None, []

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self.calls.append(("create", group, version, namespace, plural))
        self.created = json.loads(json.dumps(body))
        return self.created

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.calls.append(("get", group, version, namespace, plural, name))
        assert name == self.created["metadata"]["name"]
        current = copy.deepcopy(self.created)
        if self.polls > 0:
            self.polls -= 1
            current["status"] = {
                "conditions": [
                    {"type": "Created", "status": "True", "reason": "ExperimentCreated"},
                    {"type": "Running", "status": "True", "reason": "ExperimentRunning"},
                ],
                "trialsRunning": 2,
                "trialsSucceeded": 1,
            }
        else:
            current["status"] = self.final
        return current


def optimal(assignments, value, name="kfp-ct-sklearn-abc-x1"):
    return {
        "bestTrialName": name,
        "parameterAssignments": [{"name": k, "value": v} for k, v in assignments.items()],
        "observation": {
            "metrics": [
                {"name": "validation-roc_auc", "latest": "0.91", "max": str(value), "min": "0.88"},
                {"name": "validation-accuracy", "latest": "0.86", "max": "0.87", "min": "0.85"},
            ]
        },
    }


BEST = {"learning_rate": "0.0567", "max_leaf_nodes": "40", "min_samples_leaf": "12", "l2_regularization": "0.25"}


def succeeded(reason="ExperimentMaxTrialsReached"):
    return {
        "conditions": [
            {"type": "Created", "status": "True"},
            {"type": "Running", "status": "False"},
            {"type": "Succeeded", "status": "True", "reason": reason, "message": "done"},
        ],
        "currentOptimalTrial": optimal(BEST, 0.93),
        "trials": 12,
        "trialsSucceeded": 11,
        "trialsFailed": 1,
    }


def test_submit_wait_and_read_the_optimal_trial():
    api, lines = FakeCustomObjectsApi(succeeded()), []
    parameters = parse_search_space(defaults.default_search_space("sklearn"))
    body = sklearn_experiment()
    result = katib.run_experiment(body, parameters, api=api, poll_seconds=0, log=lines.append, sleep=lambda s: None)
    assert api.calls[0] == ("create", "kubeflow.org", "v1beta1", "kubeflow-user-example-com", "experiments")
    assert api.created == body
    assert [c[0] for c in api.calls] == ["create", "get", "get", "get"]
    assert result.best.params == {
        "learning_rate": 0.0567,
        "max_leaf_nodes": 40,
        "min_samples_leaf": 12,
        "l2_regularization": 0.25,
    }
    assert result.best.value == 0.93  # the objective's strategy is max for maximize
    assert result.best.metrics["validation-accuracy"] == [0.87]
    assert result.best.name == "kfp-ct-sklearn-abc-x1"
    assert result.reason == "max_trial_count" and result.count(SUCCEEDED) == 11
    assert result.count(FAILED) == 1
    assert any("1 succeeded, 0 failed, 2 running" in line for line in lines)


def test_goal_reached_and_failed_experiments():
    parameters = parse_search_space(defaults.default_search_space("sklearn"))
    result = katib.run_experiment(
        sklearn_experiment(objective_goal=0.9),
        parameters,
        api=FakeCustomObjectsApi(succeeded("ExperimentGoalReached"), 0),
        log=lambda s: None,
    )
    assert result.reason == "goal"
    failed = {
        "conditions": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "ExperimentFailed",
                "message": "Experiment has failed because max failed count has reached",
            }
        ],
        "trialsFailed": 4,
        "trialsSucceeded": 2,
        "currentOptimalTrial": optimal(BEST, 0.9),
    }
    result = katib.run_experiment(
        sklearn_experiment(), parameters, api=FakeCustomObjectsApi(failed, 0), log=lambda s: None
    )
    assert result.reason == "max_failed_trial_count" and result.best.value == 0.9
    failed["currentOptimalTrial"] = {"observation": {}}
    with pytest.raises(
        RuntimeError,
        match=r"failed \(max_failed_trial_count: Experiment has failed because max "
        r"failed count has reached\) with no trial reporting validation-roc_auc",
    ):
        katib.run_experiment(sklearn_experiment(), parameters, api=FakeCustomObjectsApi(failed, 0), log=lambda s: None)


def test_waiting_times_out_naming_the_experiment():
    api = FakeCustomObjectsApi(succeeded(), polls_before_done=10**6)
    body = sklearn_experiment()
    with pytest.raises(TimeoutError, match=r"kubeflow-user-example-com/kfp-ct-sklearn-test did not finish within"):
        katib.submit_and_wait(body, api, timeout=0.2, poll_seconds=0.05, log=lambda s: None)


def test_an_invalid_experiment_is_never_submitted():
    api = FakeCustomObjectsApi(succeeded())
    body = sklearn_experiment()
    body["spec"]["maxTrialCount"] = "12"
    with pytest.raises(ValueError, match="'12' is not of type 'integer'"):
        katib.run_experiment(body, [], api=api)
    assert api.calls == []


def test_tune_with_the_katib_backend_returns_the_local_shape(elec2_split):
    api = FakeCustomObjectsApi(succeeded(), 1)
    outcome = core.tune(
        train_path=elec2_split["train"],
        featurizer_path=elec2_split["featurizer"],
        target_column="class",
        task="classification",
        backend="katib",
        hyperparameters={"max_iter": 50},
        train_uri="gs://b/train.parquet",
        featurizer_uri="gs://b/featurizer",
        katib_api=api,
        katib_poll_seconds=0,
        log=lambda s: None,
    )
    assert outcome.hyperparameters == {
        "max_iter": 50,
        "learning_rate": 0.0567,
        "max_leaf_nodes": 40,
        "min_samples_leaf": 12,
        "l2_regularization": 0.25,
    }
    assert outcome.metrics["best_validation-roc_auc"] == 0.93
    command = api.created["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--train-uri") + 1] == "gs://b/train.parquet"
    assert api.created["metadata"]["name"].startswith("kfp-ct-sklearn-")


# --- the trial entrypoint a Katib trial's Job runs ---------------------------------------------------------------


def test_trial_module_prints_what_katibs_collector_reads(elec2_split):
    body = sklearn_experiment(train_uri=elec2_split["train"], featurizer_uri=elec2_split["featurizer"])
    command = body["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"]
    # substitute the trial parameters as Katib does, with strings
    assignments = {"learning_rate": "0.1", "max_leaf_nodes": "31", "min_samples_leaf": "20", "l2_regularization": "0.0"}
    for name, value in assignments.items():
        command = [part.replace(f"${{trialParameters.{name}}}", value) for part in command]
    completed = subprocess.run([sys.executable] + command[1:], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    metrics = parse_metrics(
        completed.stdout + completed.stderr, ["validation-roc_auc"] + body["spec"]["objective"]["additionalMetricNames"]
    )
    assert set(metrics) == {"validation-roc_auc", "validation-accuracy", "validation-f1", "validation-log_loss"}
    assert 0.7 < metrics["validation-roc_auc"][0] <= 1.0
    # the local backend runs the same trial code on the same rows: the same metric
    context = trial.prepare(
        "sklearn",
        elec2_split["train"],
        elec2_split["featurizer"],
        "class",
        "classification",
        {"estimator": "hist_gradient_boosting"},
        {"max_iter": 10},
        0,
    )
    params = {
        n: parse_value(t, assignments[n])
        for n, t in (
            ("learning_rate", "double"),
            ("max_leaf_nodes", "int"),
            ("min_samples_leaf", "int"),
            ("l2_regularization", "double"),
        )
    }
    local = trial.run_trial(context, params)
    assert local["roc_auc"] == pytest.approx(metrics["validation-roc_auc"][0], rel=1e-7)  # printed with 8 digits


def test_trial_module_refuses_unknown_hyperparameters(elec2_split):
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "kfp_ct.components.tune.trial",
            "--trainer",
            "sklearn",
            "--train-uri",
            elec2_split["train"],
            "--featurizer-uri",
            elec2_split["featurizer"],
            "--param",
            "depth=3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode != 0
    assert "unknown hyperparameter(s) for sklearn (estimator=hist_gradient_boosting): depth" in completed.stderr
