"""Serving fixtures: a real kfp-ct model (elec2 slice, trained with train_sklearn's core, tracked in a local sqlite
MLflow store) and the catalog's model server serving it on a free loopback port (a real kserve.ModelServer in a
subprocess, started once per session and stopped after)."""

from __future__ import annotations

import pytest
from elec2_serving import MODEL_NAME, start_model_server, stop_model_server, train_elec2


@pytest.fixture(scope="session")
def trained_model(shared_data, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("served_model")
    return train_elec2(out, f"sqlite:///{out / 'mlflow.db'}", "elec2-serving", shared_data)


@pytest.fixture(scope="session")
def model_server(trained_model, tmp_path_factory):
    """The catalog's model server serving `trained_model` as 'elec2': yields its base URL."""
    log = tmp_path_factory.mktemp("model_server") / "server.log"
    process, base = start_model_server(trained_model["path"], MODEL_NAME, log)
    yield base
    stop_model_server(process)
