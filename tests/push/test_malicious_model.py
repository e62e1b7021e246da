"""Models are data, never code: a real catalog model folder, tampered with as an attacker would (a pickle behind a
rewritten MLmodel, cloudpickle, a skops file naming an untrusted type, a torch file with a pickled payload, an
adapter naming other kfp_ct code), is refused by every loader of the catalog (the server's model class, `kfp-ct
serve`, evaluate, push with its infra validation, the performance trigger), with an error naming the file; the
payload never runs and nothing is promoted or registered. And the gate fails closed: a champion alias that cannot be
resolved is an error naming the alias and the version, never "the first model"."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import uuid

import pytest
import yaml

from kfp_ct.components._common import model as model_format
from kfp_ct.components._common import storage, tracking
from kfp_ct.components.evaluate.core import evaluate
from kfp_ct.components.monitor_drift.core import performance_decay
from kfp_ct.components.push.core import InfraValidationError, push
from kfp_ct.components.push.server import make_model_class
from kfp_ct.components.reference_data.core import champion_training_data

pytestmark = pytest.mark.integration


class _Payload:
    """Unpickling it writes the marker file: what an attacker's pickle would do instead."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _rewrite_mlmodel(folder, edit) -> None:
    path = folder / "MLmodel"
    conf = yaml.safe_load(path.read_text())
    edit(conf)
    path.write_text(yaml.safe_dump(conf))


def _pickle_folder(folder, marker, fmt: str) -> str:
    """The sklearn flavor rewritten to serialization_format pickle/cloudpickle, with the payload in model.pkl."""
    import cloudpickle

    (folder / "model.skops").unlink()
    dump = pickle.dumps if fmt == "pickle" else cloudpickle.dumps
    (folder / "model.pkl").write_bytes(dump(_Payload(marker)))

    def edit(conf):
        conf["flavors"]["sklearn"].update(serialization_format=fmt, pickled_model="model.pkl")
        conf["flavors"]["sklearn"].pop("skops_trusted_types", None)

    _rewrite_mlmodel(folder, edit)
    return "model.pkl"


def _pickle_without_suffix(folder, marker) -> str:
    """The payload under a name that does not say pickle, named by the MLmodel's pickle flavor."""
    (folder / "model.skops").unlink()
    (folder / "estimator.bin").write_bytes(pickle.dumps(_Payload(marker)))
    _rewrite_mlmodel(
        folder,
        lambda conf: conf["flavors"]["sklearn"].update(serialization_format="pickle", pickled_model="estimator.bin"),
    )
    return "estimator.bin"


def _untrusted_skops(folder, marker) -> str:
    """A skops file whose pipeline holds a function from outside the catalog, trusted by the tampered MLmodel."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from kfp_ct.components._common.featurizer import skops_io

    pipeline = skops_io().load(
        folder / "model.skops", trusted=skops_io().get_untrusted_types(file=folder / "model.skops")
    )
    evil = Pipeline([("run", FunctionTransformer(func=os.system)), *pipeline.steps])
    skops_io().dump(evil, folder / "model.skops")
    untrusted = skops_io().get_untrusted_types(file=folder / "model.skops")
    _rewrite_mlmodel(folder, lambda conf: conf["flavors"]["sklearn"].update(skops_trusted_types=untrusted))
    return "model.skops"


def _untrusted_featurizer(folder, marker) -> str:
    """A featurizer whose pipeline first calls a scikit-learn function that writes files (skops' own checks and a
    prefix rule on "sklearn." would let it through; the catalog's exact list does not)."""
    from sklearn.datasets import dump_svmlight_file
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from kfp_ct.components._common.featurizer import skops_io

    file = folder / "featurizer" / "transformer.skops"
    transformer = skops_io().load(file, trusted=skops_io().get_untrusted_types(file=file))
    writer = FunctionTransformer(func=dump_svmlight_file, kw_args={"y": [0], "f": marker})
    skops_io().dump(Pipeline([("write", writer), ("featurize", transformer)]), file)
    return "transformer.skops holds types the catalog does not trust: sklearn.datasets"


def _torch_payload(folder, marker) -> str:
    """The folder turned into a torch model whose weights file unpickles the payload."""
    import torch

    (folder / "data").mkdir(exist_ok=True)
    torch.save({"0.weight": _Payload(marker)}, folder / "data" / "weights.pt")
    (folder / "data" / "network.json").write_text('{"n_features": 3, "n_outputs": 2, "hidden_sizes": [], "dropout": 0}')
    _rewrite_mlmodel(folder, lambda conf: conf["metadata"]["kfp_ct"].update(adapter="torch", framework="torch"))
    return "weights.pt"


def _foreign_adapter(folder, marker) -> str:
    """The adapter named as another zero-argument kfp_ct callable (the CLI's main)."""
    _rewrite_mlmodel(folder, lambda conf: conf["metadata"]["kfp_ct"].update(adapter="kfp_ct.pipelines.cli:main"))
    return "kfp_ct.pipelines.cli:main"


TAMPERINGS = {
    "pickle": lambda folder, marker: _pickle_folder(folder, marker, "pickle"),
    "cloudpickle": lambda folder, marker: _pickle_folder(folder, marker, "cloudpickle"),
    "pickle_named_bin": _pickle_without_suffix,
    "untrusted_skops": _untrusted_skops,
    "untrusted_featurizer": _untrusted_featurizer,
    "torch_pickle": _torch_payload,
    "foreign_adapter": _foreign_adapter,
}


@pytest.fixture(params=sorted(TAMPERINGS))
def malicious(request, trained_model, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(trained_model["path"], folder)
    marker = tmp_path / "marker"
    named = TAMPERINGS[request.param](folder, str(marker))
    yield {"path": str(folder), "marker": marker, "named": named, "kind": request.param}
    assert not marker.exists(), f"the {request.param} payload ran"


def _versions(name, uri) -> list[str]:
    return tracking.versions(name, uri)


def test_load_model_refuses_it_naming_the_file(malicious):
    with pytest.raises(ValueError, match=malicious["named"]):
        model_format.load_model(malicious["path"])


def test_the_server_model_class_refuses_it(malicious):
    with pytest.raises(ValueError, match=malicious["named"]):
        make_model_class()("elec2", malicious["path"]).load()


def test_evaluate_refuses_it_and_blesses_nothing(malicious, trained_model):
    name, uri = f"evil-{uuid.uuid4().hex[:8]}", trained_model["tracking_uri"]
    with pytest.raises(ValueError, match=malicious["named"]):
        evaluate(
            model_path=malicious["path"],
            test_path=trained_model["test"],
            target_column="class",
            model_name=name,
            tracking_uri=uri,
        )
    assert tracking.get_alias(name, tracking.CHALLENGER, uri) is None


def test_push_refuses_it_promotes_and_registers_nothing(malicious, trained_model, tmp_path):
    registered, uri = trained_model["registered"], trained_model["tracking_uri"]
    before = (tracking.get_alias(registered, tracking.CHAMPION, uri), _versions(registered, uri))
    store = tmp_path / "store"
    with pytest.raises(InfraValidationError, match=malicious["named"]):
        push(
            model_dir=malicious["path"],
            model_name="elec2",
            storage_uri=str(store),
            tracking_uri=uri,
            log=lambda line: None,
        )
    assert (tracking.get_alias(registered, tracking.CHAMPION, uri), _versions(registered, uri)) == before
    assert storage.list_versions(str(store)) == []  # the published copy was withdrawn


def test_the_performance_trigger_refuses_a_malicious_champion(malicious, trained_model):
    name, uri = f"evil-{uuid.uuid4().hex[:8]}", trained_model["tracking_uri"]
    version = tracking.register_version(name, malicious["path"], tracking_uri=uri)
    tracking.promote(name, version, tracking_uri=uri)
    with pytest.raises(tracking.AliasError, match=f"(?s)'champion' alias of '{name}'.*version {version}.*"):
        performance_decay(trained_model["test"], "class", name, 0.1, uri)
    with pytest.raises(tracking.AliasError, match=malicious["named"]):
        performance_decay(trained_model["test"], "class", name, 0.1, uri)


def test_kfp_ct_serve_exits_without_running_the_pickle(trained_model, tmp_path):
    folder, marker = tmp_path / "model", tmp_path / "marker"
    shutil.copytree(trained_model["path"], folder)
    _pickle_folder(folder, str(marker), "pickle")
    command = "import sys; from kfp_ct.pipelines.cli import main; sys.argv[0] = 'kfp-ct'; main()"
    done = subprocess.run(
        [sys.executable, "-c", command, "serve", str(folder), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "model.pkl: pickle files in a model folder are refused" in done.stderr + done.stdout
    assert not marker.exists()


def test_a_deleted_champion_fails_the_gate(trained_model):
    """MLflow drops an alias with its version; the catalog's tag still says a champion existed: an error, not a
    first model."""
    from kfp_ct.components._common.model import read_metadata

    name, uri = f"gate-{uuid.uuid4().hex[:8]}", trained_model["tracking_uri"]
    run_id = read_metadata(trained_model["path"])["mlflow_run_id"]
    first = tracking.register_version(name, trained_model["path"], run_id=run_id, tracking_uri=uri)
    tracking.promote(name, first, tracking_uri=uri)
    candidate = tracking.register_version(name, trained_model["path"], run_id=run_id, tracking_uri=uri)
    tracking.client(uri).delete_model_version(name, first)
    assert tracking.get_alias(name, tracking.CHAMPION, uri) is None  # what MLflow itself says now

    gone = f"'champion' alias of '{name}' is gone: it pointed at version {first}, which no longer exists"
    with pytest.raises(tracking.AliasError, match=gone):
        evaluate(
            model_path=trained_model["path"],
            test_path=trained_model["test"],
            target_column="class",
            model_name=name,
            tracking_uri=uri,
        )
    assert tracking.get_alias(name, tracking.CHALLENGER, uri) is None
    with pytest.raises(tracking.AliasError, match=gone):
        performance_decay(trained_model["test"], "class", name, 0.1, uri)
    with pytest.raises(tracking.AliasError, match=gone):
        champion_training_data(name, uri)

    # pointing the champion at a version that serves is the way back
    tracking.promote(name, candidate, tracking_uri=uri)
    outcome = evaluate(
        model_path=trained_model["path"],
        test_path=trained_model["test"],
        target_column="class",
        model_name=name,
        tracking_uri=uri,
    )
    assert outcome.champion_version == candidate


def test_a_champion_whose_files_are_gone_fails_the_gate(trained_model, tmp_path):
    name, uri = f"gate-{uuid.uuid4().hex[:8]}", trained_model["tracking_uri"]
    copy = tmp_path / "copy"
    shutil.copytree(trained_model["path"], copy)
    version = tracking.register_version(name, str(copy), tracking_uri=uri)
    tracking.promote(name, version, tracking_uri=uri)
    shutil.rmtree(copy)
    with pytest.raises(tracking.AliasError, match=f"'champion' alias of '{name}' points at version {version}"):
        evaluate(
            model_path=trained_model["path"],
            test_path=trained_model["test"],
            target_column="class",
            model_name=name,
            tracking_uri=uri,
        )
    assert tracking.get_alias(name, tracking.CHALLENGER, uri) is None


def test_only_a_registry_without_the_alias_blesses_a_first_model(trained_model):
    uri = trained_model["tracking_uri"]
    unregistered = f"new-{uuid.uuid4().hex[:8]}"
    assert tracking.resolve_alias(unregistered, tracking.CHAMPION, uri) is None
    registered = f"new-{uuid.uuid4().hex[:8]}"
    tracking.register_version(registered, trained_model["path"], tracking_uri=uri)
    assert tracking.resolve_alias(registered, tracking.CHAMPION, uri) is None
