"""The step's credentials from the mounted Secret: each known key's file becomes an environment variable, and what
the environment already sets wins (kfp_ct.components._common.credentials)."""

import os
import subprocess
import sys

import pytest

from kfp_ct.components._common import credentials


@pytest.fixture
def clean_env(monkeypatch):
    for key in credentials.KEYS:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_each_key_file_sets_its_variable_and_the_environment_wins(tmp_path, clean_env):
    (tmp_path / "MLFLOW_TRACKING_URI").write_text("http://mlflow.mlflow.svc:5000\n")  # --from-file keeps a newline
    (tmp_path / "AWS_ACCESS_KEY_ID").write_text("from-secret")
    (tmp_path / "AWS_SECRET_ACCESS_KEY").write_text("s3cr3t")
    (tmp_path / "UNRELATED").write_text("x")
    (tmp_path / "..data").mkdir()  # what a Secret volume also holds
    clean_env.setenv("AWS_ACCESS_KEY_ID", "from-env")

    assert credentials.load(tmp_path) == ["MLFLOW_TRACKING_URI", "AWS_SECRET_ACCESS_KEY"]
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://mlflow.mlflow.svc:5000"
    assert os.environ["AWS_ACCESS_KEY_ID"] == "from-env"
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == "s3cr3t"
    assert "UNRELATED" not in os.environ


def test_no_secret_mounted_sets_nothing(tmp_path, clean_env):
    assert credentials.load(tmp_path / "absent") == []
    assert not [key for key in credentials.KEYS if key in os.environ]


@pytest.mark.parametrize("runtime,loaded", [("true", True), ("false", False)])
def test_a_running_component_reads_them_when_it_imports_the_catalog(runtime, loaded):
    """KFP's executor sets _KFP_RUNTIME=true, and every component body imports its core through the catalog."""
    code = "import sys, kfp_ct.components; print('kfp_ct.components._common.credentials' in sys.modules)"
    env = {**os.environ, "_KFP_RUNTIME": runtime}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(loaded)
