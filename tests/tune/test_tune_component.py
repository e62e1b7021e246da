"""The tune component on a slice of real data (elec2) with the scikit-learn trainer, through its python_func, and
the errors it raises before any trial runs."""

import time

import pytest

from kfp_ct.components.tune import core
from kfp_ct.components.tune.results import SUCCEEDED


def test_tune_python_func_finds_hyperparameters_the_trainer_takes(elec2_split, tmp_path):
    from kfp import dsl

    from kfp_ct.components._common.training import load_train_data
    from kfp_ct.components.train_sklearn import core as sk
    from kfp_ct.components.tune import tune

    train, featurizer = dsl.Dataset(uri=elec2_split["train"]), dsl.Model(uri=elec2_split["featurizer"])
    metrics, report = dsl.Metrics(uri=str(tmp_path / "metrics")), dsl.Markdown(uri=str(tmp_path / "report.md"))
    best = tune.python_func(
        train=train,
        featurizer=featurizer,
        target_column="class",
        task="classification",
        metrics=metrics,
        report=report,
        algorithm="random",
        max_trial_count=4,
        parallel_trial_count=2,
        hyperparameters={"max_iter": 10},
        seed=3,
    )
    assert set(best) == {"max_iter", "learning_rate", "max_leaf_nodes", "min_samples_leaf", "l2_regularization"}
    assert best["max_iter"] == 10 and isinstance(best["max_leaf_nodes"], int)
    assert 0.01 <= best["learning_rate"] <= 0.3
    assert metrics.metadata["trials"] == 4 and metrics.metadata["trials_succeeded"] == 4
    text = (tmp_path / "report.md").read_text()
    assert "Stopped by: max_trial_count" in text and "| learning_rate |" in text
    assert report.metadata == {
        "trainer": "sklearn",
        "estimator": "hist_gradient_boosting",
        "algorithm": "random",
        "backend": "local",
        "stopped_by": "max_trial_count",
    }
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]  # written in place, no partial left beside it
    # the dict is the trainer's `hyperparameters` input as is, and refitting reproduces the best trial's score
    checked = sk.hyperparameters_for("hist_gradient_boosting")
    assert set(best) <= set(checked)
    data = load_train_data(elec2_split["train"], elec2_split["featurizer"], 3, "class", "classification")
    refit = sk.fit(data.x_fit, data.y_fit, data.x_val, data.y_val, "classification", 2, best, seed=3)
    assert refit.metrics["roc_auc"] == pytest.approx(metrics.metadata["best_validation-roc_auc"], rel=1e-7)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"trainer": "xgboost"}, ValueError, "unknown trainer 'xgboost': expected one of sklearn, torch, keras"),
        ({"options": {"estimator": "svm"}}, ValueError, "unknown estimator 'svm'"),
        (
            {"search_space": [{"name": "depth", "parameterType": "int", "feasibleSpace": {"min": "2", "max": "8"}}]},
            ValueError,
            r"unknown hyperparameter\(s\) for sklearn \(estimator=hist_gradient_boosting\): depth; allowed: ",
        ),
        ({"hyperparameters": {"n_estimators": 10}}, ValueError, r"unknown hyperparameter\(s\) .*: n_estimators"),
        ({"hyperparameters": {"learning_rate": 0.1}}, ValueError, "learning_rate are both fixed"),
        (
            {
                "search_space": [
                    {"name": "learning_rate", "parameterType": "double", "feasibleSpace": {"min": "0.3", "max": "0.01"}}
                ]
            },
            ValueError,
            "is above max",
        ),
        (
            {"objective_metric_name": "validation-rmse", "objective_type": "minimize"},
            ValueError,
            "'validation-rmse' is not a metric the sklearn trainer reports for classification",
        ),
        (
            {"objective_metric_name": "validation-log_loss", "objective_type": "maximize"},
            ValueError,
            "objective_type should be minimize",
        ),
        ({"algorithm": "hyperband"}, ValueError, "runs only on Katib"),
        (
            {
                "algorithm": "cmaes",
                "search_space": [
                    {"name": "learning_rate", "parameterType": "double", "feasibleSpace": {"min": "0.01", "max": "0.3"}}
                ],
            },
            ValueError,
            "cmaes needs two or more continuous",
        ),
        ({"backend": "cloud"}, ValueError, "backend must be 'local' or 'katib'"),
        ({"task": "ranking"}, ValueError, "task must be classification or regression"),
    ],
)
def test_bad_settings_fail_before_any_trial(elec2_split, tmp_path, kwargs, error, message):
    settings = {
        "train_path": elec2_split["train"],
        "featurizer_path": elec2_split["featurizer"],
        "target_column": "class",
        "task": "classification",
        **kwargs,
    }
    lines, started = [], time.monotonic()
    with pytest.raises(error, match=message):
        core.tune(log=lines.append, **settings)
    assert lines == []  # no trial ran
    assert time.monotonic() - started < 10


def test_missing_data_fails_before_any_trial(elec2_split, tmp_path):
    with pytest.raises(FileNotFoundError, match="train dataset file not found: .*missing.parquet"):
        core.tune(
            train_path=str(tmp_path / "missing.parquet"),
            featurizer_path=elec2_split["featurizer"],
            target_column="class",
            task="classification",
            max_trial_count=2,
            max_failed_trial_count=0,
            log=lambda line: None,
        )
    broken = tmp_path / "broken.parquet"
    broken.write_text("not parquet")
    with pytest.raises(RuntimeError, match=r"(?s)preparing the trials failed \(before any trial ran\).*broken.parquet"):
        core.tune(
            train_path=str(broken),
            featurizer_path=elec2_split["featurizer"],
            target_column="class",
            task="classification",
            max_trial_count=2,
            max_failed_trial_count=0,
            log=lambda line: None,
        )


@pytest.mark.local
def test_tune_under_kfp_local(kfp_local, elec2_split):
    """The component in the executor a KFP pod runs (kfp.local), its worker processes included; its dict output
    feeds the next task's hyperparameters input as the trainer's would."""
    from kfp import dsl

    from kfp_ct.components.tune import tune

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def hyperparameter_names(hyperparameters: dict) -> str:
        return ",".join(sorted(hyperparameters))

    @dsl.pipeline
    def tune_only(train_uri: str, featurizer_uri: str) -> str:
        train = dsl.importer(artifact_uri=train_uri, artifact_class=dsl.Dataset, reimport=False)
        featurizer = dsl.importer(artifact_uri=featurizer_uri, artifact_class=dsl.Model, reimport=False)
        tuned = tune(
            train=train.output,
            featurizer=featurizer.output,
            target_column="class",
            task="classification",
            algorithm="tpe",
            max_trial_count=3,
            parallel_trial_count=2,
            hyperparameters={"max_iter": 5},
        )
        return hyperparameter_names(hyperparameters=tuned.outputs["Output"]).output

    task = tune_only(train_uri=elec2_split["train"], featurizer_uri=elec2_split["featurizer"])
    assert task.output == "l2_regularization,learning_rate,max_iter,max_leaf_nodes,min_samples_leaf"


def test_prepared_rows_reach_the_workers_as_shared_files(elec2_split, tmp_path):
    """The parent loads the rows once; a worker unpickles them as copy-on-write maps of the same files."""
    import pickle

    import numpy as np

    from kfp_ct.components.tune import trial

    args = ("sklearn", elec2_split["train"], elec2_split["featurizer"], "class", "classification", None, None, 0)
    loaded = trial.prepare(*args)
    shared = trial.prepare(*args, share_dir=str(tmp_path))
    message = pickle.dumps(shared)
    assert len(message) < 2000 < loaded.x_fit.nbytes  # file names travel, not the rows
    received = pickle.loads(message)
    for name in trial.TrialContext.ARRAYS:
        assert isinstance(getattr(received, name), np.memmap)
        np.testing.assert_array_equal(getattr(received, name), getattr(loaded, name))
    received.x_fit[0, 0] += 1  # a trainer may write into its rows: its own copy changes, not the file
    np.testing.assert_array_equal(np.load(tmp_path / "x_fit.npy"), loaded.x_fit)


@pytest.mark.parametrize("trainer", ["torch", "keras"])
def test_the_network_trainers_tune_on_the_shared_rows(elec2_split, trainer):
    outcome = core.tune(
        train_path=elec2_split["train"],
        featurizer_path=elec2_split["featurizer"],
        target_column="class",
        task="classification",
        trainer=trainer,
        search_space=[{"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.001", "max": "0.01"}}],
        algorithm="random",
        max_trial_count=2,
        parallel_trial_count=2,
        max_failed_trial_count=0,
        hyperparameters={"epochs": 3, "hidden_sizes": [16]},
        log=lambda line: None,
    )
    assert outcome.search.count(SUCCEEDED) == 2, [t.error for t in outcome.search.trials]
    assert 0.6 < outcome.metrics["best_validation-roc_auc"] <= 1
    assert outcome.hyperparameters["epochs"] == 3 and 0.001 <= outcome.hyperparameters["lr"] <= 0.01
