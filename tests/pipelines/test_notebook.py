"""The example notebook, executed cell by cell in a real kernel: up to the cluster section anywhere, and then its
submit and schedule cells against the loopback stand-in of the KFP API server (kfp_standin.py), both with `KFP_HOST`
and as in a Kubeflow notebook server (no host: kfp.Client() in-cluster)."""

from pathlib import Path

import kfp_standin
import nbformat
import pytest
from kfp_standin import IN_CLUSTER_HOST, IN_CLUSTER_PORT, PROFILE_NAMESPACE
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

kfp_api, kfp_context, in_cluster = kfp_standin.kfp_api, kfp_standin.kfp_context, kfp_standin.in_cluster  # fixtures

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "continuous_training.ipynb"


def _execute(tmp_path, until_cluster: bool = False, setup: str | None = None) -> list:
    """Runs the notebook's code cells in order (after `setup`, run first in the same kernel); returns the cells."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    if setup is not None:
        notebook.cells.insert(0, nbformat.v4.new_code_cell(setup))
    client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}})
    ran = []
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            if until_cluster and "needs-cluster" in cell.metadata.get("tags", []):
                break
            client.execute_cell(cell, index)
            ran.append(cell)
    return ran


def _result(cell) -> str:
    return next(o["data"]["text/plain"] for o in cell.outputs if o["output_type"] == "execute_result")


def test_notebook_runs_until_a_cluster_is_needed(tmp_path):
    ran = _execute(tmp_path, until_cluster=True)
    assert sum(cell.cell_type == "code" for cell in ran) >= 3
    assert (tmp_path / "continuous-training-pipeline.yaml").is_file()


def test_outside_a_cluster_without_kfp_host_the_notebook_says_what_to_set(tmp_path, kfp_context, monkeypatch):
    monkeypatch.delenv("KFP_HOST", raising=False)
    with pytest.raises(CellExecutionError, match="no KFP host"):
        _execute(tmp_path)


def _submitted_and_scheduled(ran, requests) -> None:
    assert _result(ran[-2]) == "'run-1'" and _result(ran[-1]) == "'rec-1'"
    posts = [r.path.split("?")[0] for r in requests if r.method == "POST"]
    assert posts.count("/apis/v2beta1/runs") == 1 and posts.count("/apis/v2beta1/recurringruns") == 1, posts


def test_notebook_submits_and_schedules_on_kfp_host_with_the_token(tmp_path, kfp_api, monkeypatch):
    host, requests = kfp_api
    monkeypatch.setenv("KFP_HOST", host)
    monkeypatch.setenv("KFP_TOKEN", "notebook-token")
    _submitted_and_scheduled(_execute(tmp_path), requests)
    assert all(r.authorization == "Bearer notebook-token" for r in requests), requests


def test_notebook_in_a_kubeflow_notebook_server_needs_no_host(tmp_path, in_cluster, monkeypatch):
    monkeypatch.delenv("KFP_HOST", raising=False)
    patch, requests = in_cluster
    _submitted_and_scheduled(_execute(tmp_path, setup=patch), requests)
    assert all(r.host == f"{IN_CLUSTER_HOST}:{IN_CLUSTER_PORT}" for r in requests), requests
    assert all(r.authorization == "Bearer projected-kfp-token" for r in requests), requests
    experiments = [r.body for r in requests if r.method == "POST" and r.path.startswith("/apis/v2beta1/experiments")]
    assert experiments and all(e["namespace"] == PROFILE_NAMESPACE for e in experiments), experiments
