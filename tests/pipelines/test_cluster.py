"""cluster/: the committed manifests are the builder's (kfp_ct.pipelines.cluster), the kustomization lists every one,
the RBAC names exactly what the catalog's code calls on the Kubernetes API, the MLflow server runs with the
Deployment's own arguments (on loopback, artifacts proxied to a moto S3 server), and `kfp-ct secret` prints the
steps' Secret from the environment."""

from __future__ import annotations

import ast
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from loopback import free_port, start_server, stop_server

from kfp_ct.components._common import images
from kfp_ct.components._common.credentials import KEYS as SECRET_KEYS
from kfp_ct.components._common.credentials import SECRET_NAME
from kfp_ct.pipelines import cli, cluster

REPO = Path(__file__).resolve().parents[2]
FOLDER = REPO / "cluster"


def test_committed_cluster_folder_is_not_stale_and_kustomization_lists_every_manifest():
    rendered = cluster.render_manifests()
    committed = {path.name for path in FOLDER.glob("*.yaml")}
    assert committed == set(rendered), "cluster/ is stale: run make manifests"
    for name, text in rendered.items():
        assert (FOLDER / name).read_text() == text, f"cluster/{name} is stale: run make manifests"
        assert all(isinstance(doc, dict) and doc.get("kind") for doc in yaml.safe_load_all(text)), name
    kustomization = yaml.safe_load((FOLDER / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(committed - {"kustomization.yaml"})
    assert not (FOLDER / "__init__.py").exists()  # cluster/ is never a Python package


def _custom_object_calls() -> set[tuple[str, str, str]]:
    """(group, plural, verb) of every CustomObjectsApi call in the catalog, read from its source."""
    import importlib

    found = set()
    for path in sorted((REPO / "components").rglob("*.py")):
        tree = ast.parse(path.read_text())
        calls = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr.endswith("_namespaced_custom_object")
        ]
        if not calls:
            continue
        module = importlib.import_module("kfp_ct." + ".".join(path.relative_to(REPO).with_suffix("").parts))
        for call in calls:
            group, plural = (getattr(module, arg.id) for arg in (call.args[0], call.args[3]))
            found.add((group, plural, cluster.VERBS[call.func.attr.split("_", 1)[0]]))
    return found


def test_the_cluster_role_grants_exactly_what_the_code_calls():
    calls = _custom_object_calls()
    assert {(g, p) for g, p, _ in calls} == {
        ("serving.kserve.io", "inferenceservices"),
        ("kubeflow.org", "experiments"),
    }
    role = yaml.safe_load((FOLDER / "rbac.yaml").read_text())
    granted = {
        (group, plural, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for plural in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == calls
    # aggregated into kubeflow-edit, which each profile's default-editor service account is bound to
    assert role["metadata"]["labels"]["rbac.authorization.kubeflow.org/aggregate-to-kubeflow-edit"] == "true"
    # and the catalog uses no other Kubernetes API than the custom objects one
    source = "\n".join(path.read_text() for path in (REPO / "components").rglob("*.py"))
    apis = {node.attr for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Attribute)}
    assert {a for a in apis if a.endswith("Api") and a[:1].isupper()} <= {"CustomObjectsApi"}


def test_the_server_reads_the_steps_secret():
    deployment = yaml.safe_load((FOLDER / "mlflow-deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    refs = [env["valueFrom"]["secretKeyRef"] for env in container["env"]]
    assert refs and all(ref["name"] == SECRET_NAME and ref["key"] in SECRET_KEYS for ref in refs)
    claim = deployment["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    pvc = yaml.safe_load((FOLDER / "mlflow-pvc.yaml").read_text())
    assert claim == pvc["metadata"]["name"]
    assert container["image"] == images.MLFLOW_IMAGE


@pytest.fixture
def s3_server(monkeypatch):
    """moto's S3 server on loopback with KFP's bucket `mlpipeline`; yields its endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in (
        ("AWS_ACCESS_KEY_ID", "minio"),
        ("AWS_SECRET_ACCESS_KEY", "minio123"),
        ("AWS_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="mlpipeline")
    yield endpoint
    server.stop()


def _status(url: str, host: str) -> int:
    request = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.mark.integration
def test_the_deployments_mlflow_server_proxies_artifacts_to_s3_and_answers_its_service_names(tmp_path, s3_server):
    import boto3

    from kfp_ct.components._common import tracking

    port = free_port()
    args = []
    for arg in cluster.server_args():  # the Deployment's arguments, on loopback and in tmp_path
        name = arg.split("=", 1)[0]
        replaced = {
            "--host": "--host=127.0.0.1",
            "--port": f"--port={port}",
            "--backend-store-uri": f"--backend-store-uri=sqlite:///{tmp_path}/mlflow.db",
        }
        args.append(replaced.get(name, arg))
    server = start_server(  # the credentials come from the environment, as from the Secret in the Deployment
        [sys.executable, "-m", "mlflow", *args],
        f"http://127.0.0.1:{port}/health",
        tmp_path / "server.log",
        env={**os.environ, "MLFLOW_S3_ENDPOINT_URL": s3_server},
    )
    try:
        uri = f"http://127.0.0.1:{port}"
        client = tracking.client(uri)
        run = client.create_run(tracking.experiment_id(client, "cluster-test"))
        (tmp_path / "model").mkdir()
        (tmp_path / "model" / "MLmodel").write_text("flavors: {}\n")
        client.log_artifacts(run.info.run_id, str(tmp_path / "model"), "model")
        version = tracking.register_version("cluster-test", f"{run.info.artifact_uri}/model", run.info.run_id, uri)
        assert version == "1"
        keys = [
            o["Key"]
            for o in boto3.client("s3", endpoint_url=s3_server).list_objects_v2(Bucket="mlpipeline")["Contents"]
        ]
        assert any(k.startswith("mlflow/") and k.endswith("/model/MLmodel") for k in keys), keys
        # the Service's names pass MLflow's Host check; another name does not
        search = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
        assert _status(search, "mlflow:5000") == 200
        assert _status(search, "mlflow.kubeflow-user-example-com.svc.cluster.local:5000") == 200
        assert _status(search, "attacker.example.com") in (400, 403)
    finally:
        stop_server(server)


def test_secret_prints_the_steps_secret_from_the_environment(monkeypatch, capsys):
    for key in SECRET_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr:et 'quoted'")
    monkeypatch.setenv("UNRELATED_SECRET", "never")
    cli.main(["secret", "--namespace", "team-a"])
    out = capsys.readouterr()
    secret = yaml.safe_load(out.out)
    assert secret["kind"] == "Secret" and secret["metadata"] == {
        "name": SECRET_NAME,
        "namespace": "team-a",
        "labels": {"app.kubernetes.io/part-of": "kfp-ct"},
    }
    assert secret["stringData"] == {
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "AWS_SECRET_ACCESS_KEY": "s3cr:et 'quoted'",
    }
    assert "never" not in out.out and "s3cr" not in out.err


def test_secret_without_any_key_in_the_environment_names_the_keys(monkeypatch):
    for key in SECRET_KEYS:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(SystemExit, match="MLFLOW_TRACKING_URI"):
        cli.main(["secret", "--namespace", "team-a"])
