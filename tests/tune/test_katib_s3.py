"""A Katib trial reading its train split and featurizer from s3:// (moto's S3 server on loopback), as a trial pod
does: the trial module in its own process, with the environment the Experiment gives it from the kfp-ct-s3 Secret."""

import os
import subprocess
import sys

import pytest

from kfp_ct.components._common import storage
from kfp_ct.components.tune import defaults, katib
from kfp_ct.components.tune.results import parse_metrics
from kfp_ct.components.tune.settings import check_settings
from kfp_ct.components.tune.space import parse_search_space

pytestmark = pytest.mark.integration


def _experiment(train_uri: str, featurizer_uri: str) -> dict:
    return katib.experiment_dict(
        katib.build_experiment(
            name="kfp-ct-sklearn-s3",
            trainer="sklearn",
            settings=check_settings(
                parameters=parse_search_space(defaults.default_search_space("sklearn")),
                objective_metric_name="validation-roc_auc",
                local=False,
            ),
            train_uri=train_uri,
            featurizer_uri=featurizer_uri,
            target_column="class",
            task="classification",
            options={"estimator": "hist_gradient_boosting"},
            hyperparameters={"max_iter": 10},
        )
    )


def test_experiment_gives_trials_the_storage_secrets():
    body = _experiment("s3://b/train.parquet", "minio://mlpipeline/v2/artifacts/run/featurizer")
    katib.validate_experiment(body)
    container = body["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": storage.S3_SECRET}}]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert refs == {
        "MINIO_ACCESS_KEY": {"name": "mlpipeline-minio-artifact", "key": "accesskey"},
        "MINIO_SECRET_KEY": {"name": "mlpipeline-minio-artifact", "key": "secretkey"},
    }
    gcs = _experiment("gs://b/train.parquet", "gs://b/featurizer")
    container = gcs["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    assert "env" not in container and "envFrom" not in container
    with pytest.raises(ValueError, match="unsupported URI scheme 'ftp'"):
        _experiment("ftp://b/train.parquet", "gs://b/featurizer")


def test_trial_reads_train_data_from_s3(elec2_split, s3_bucket):
    client = storage.s3_client(f"s3://{s3_bucket}")
    client.upload_file(elec2_split["train"], s3_bucket, "tune/train.parquet")
    for root, _, names in os.walk(elec2_split["featurizer"]):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), elec2_split["featurizer"])
            client.upload_file(os.path.join(root, name), s3_bucket, f"tune/featurizer/{rel}")
    body = _experiment(f"s3://{s3_bucket}/tune/train.parquet", f"s3://{s3_bucket}/tune/featurizer")
    command = body["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assignments = {"learning_rate": "0.1", "max_leaf_nodes": "31", "min_samples_leaf": "20", "l2_regularization": "0.0"}
    for name, value in assignments.items():
        command = [part.replace(f"${{trialParameters.{name}}}", value) for part in command]
    # the pod's environment: the AWS_* variables of the kfp-ct-s3 Secret (this process's, set by the s3 fixture)
    completed = subprocess.run([sys.executable] + command[1:], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    metrics = parse_metrics(completed.stdout + completed.stderr, ["validation-roc_auc"])
    assert 0.7 < metrics["validation-roc_auc"][0] <= 1.0

    missing = [p.replace("tune/train.parquet", "tune/nope.parquet") for p in command]
    completed = subprocess.run([sys.executable] + missing[1:], capture_output=True, text=True, timeout=300)
    assert completed.returncode != 0
    assert f"object not found: s3://{s3_bucket}/tune/nope.parquet" in completed.stderr
