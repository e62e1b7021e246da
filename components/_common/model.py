"""The catalog's model format: one MLflow model directory that takes raw rows, whatever framework trained it.

A model artifact is a directory:

    {path}/MLmodel              flavors: python_function (this module's loader: raw rows in, labels or values out)
                                and the framework's own (sklearn, pytorch, keras, ...); the signature over the RAW
                                feature columns; metadata (framework, adapter, task, classes, library versions,
                                train data sha256 and URI, hyperparameters, seed, validation metrics, MLflow run)
    {path}/input_example.json   a few raw rows
    {path}/featurizer/          the fitted featurizer (see kfp_ct.components._common.featurizer)
    {path}/...                  the framework's files, written by its adapter

Models are data, never code. Frameworks plug in through an adapter class in their trainer's module, listed in
`ADAPTERS` (the catalog's own registry: framework name -> "module:Class") and named in the metadata by its framework
name; a model folder cannot name any other code to import. Every load goes through `load_model`, which reads only the
formats the catalog writes, each in its safe mode (`load_skops` with the trusted types named exactly,
`load_torch_weights` with `weights_only=True`, `load_keras` with `safe_mode=True`) and refuses pickle and
cloudpickle files, whatever the folder's MLmodel says:

    class MyAdapter:
        framework = "torch"          # its key in ADAPTERS, recorded in the metadata
        libraries = ("torch",)       # distributions whose versions are recorded
        def save(self, estimator, featurizer, path, mlflow_model) -> None:
            '''Writes the estimator under the (empty) directory `path` in a format one of this module's safe
            readers takes (never a pickle), adding its flavor to `mlflow_model` where MLflow has one.'''
        def load(self, path, featurizer) -> Callable[[pd.DataFrame], np.ndarray]:
            '''A scorer: raw feature rows -> class probabilities (n, n_classes) for classification, or predicted
            values (n,) for regression, reading its files with load_skops, load_torch_weights or load_keras.
            `featurizer.transform(frame)` gives the float32 matrix.'''

`save_model` does the rest (featurizer, signature, input example, metadata, the pyfunc flavor, atomic write);
`load_model` gives a `TabularModel`, and `mlflow.pyfunc.load_model(path).predict(frame)` works for every framework
(it needs kfp-ct importable, as in the catalog's images).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kfp_ct.components._common.datasets import atomic_dir
from kfp_ct.components._common.featurizer import TRANSFORMER_FILE, Featurizer, load_featurizer
from kfp_ct.components._common.featurizer import TRUSTED_TYPES as FEATURIZER_TRUSTED_TYPES
from kfp_ct.components._common.schema import CLASSIFICATION

FEATURIZER_DIR = "featurizer"
METADATA_KEY = "kfp_ct"
BASE_LIBRARIES = ("kfp-ct", "mlflow", "scikit-learn", "numpy", "pandas", "pyarrow", "skops")
INPUT_EXAMPLE_ROWS = 5


# The catalog's adapters: the only code a model's metadata can select, by name. Models saved before the names were
# short carry "module:Class"; such a name is accepted only when it is exactly one of these.
ADAPTERS = {
    "sklearn": "kfp_ct.components.train_sklearn.core:SklearnAdapter",
    "torch": "kfp_ct.components.train_torch.core:TorchAdapter",
    "keras": "kfp_ct.components.train_keras.core:KerasAdapter",
}
# Files that hold pickles (pickle, cloudpickle, joblib): never read, wherever they are in a model folder.
PICKLE_SUFFIXES = (".pkl", ".pickle", ".cloudpickle", ".joblib")
PICKLE_FORMATS = ("pickle", "cloudpickle")


# Exactly the types a fitted featurizer's skops file holds beyond skops' defaults (the featurizer's own classes and
# numpy's dtype); a model folder whose featurizer needs any other is refused before it is loaded.
def adapter_name(adapter) -> str:
    """The registry name of `adapter` (its framework), recorded in the metadata."""
    if adapter.framework not in ADAPTERS:
        raise ValueError(
            f"adapter framework '{adapter.framework}' is not in the catalog's ADAPTERS ({', '.join(ADAPTERS)})"
        )
    return adapter.framework


def resolve_adapter(name: str):
    """The adapter instance a model's metadata names: a name in `ADAPTERS` (or exactly its "module:Class" value);
    anything else is refused, and nothing named by the model folder is imported."""
    key = name if name in ADAPTERS else {path: key for key, path in ADAPTERS.items()}.get(name)
    if key is None:
        raise ValueError(f"model adapter '{name}' is not one of the catalog's adapters ({', '.join(ADAPTERS)})")
    module_name, _, class_name = ADAPTERS[key].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(
            f"cannot load the model: its adapter module {module_name} does not import ({err}); "
            "install the framework's extra, e.g. pip install 'kfp-ct[torch]'"
        ) from err
    return getattr(module, class_name)()


def library_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    versions = {}
    for name in (*BASE_LIBRARIES, *extra):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def pip_requirements(libraries: tuple[str, ...] = ()) -> list[str]:
    """Pinned requirements for a model's environment (given to mlflow.<flavor>.save_model, which otherwise infers
    them by loading the model in a subprocess). kfp-ct itself is left out: the catalog's images hold it."""
    return [f"{name}=={version}" for name, version in library_versions(libraries).items() if name != "kfp-ct"]


def signature_for(featurizer: Featurizer):
    """An MLflow signature over the raw feature columns, typed as in the training data (see featurize's
    mlflow_type); every column is optional, so rows with missing values pass to the featurizer's imputers."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema(
        [ColSpec(column["mlflow_type"], column["name"], required=False) for column in featurizer.feature_columns]
    )
    return ModelSignature(inputs=inputs)


def conform(featurizer: Featurizer, frame: pd.DataFrame) -> pd.DataFrame:
    """The raw feature columns of `frame`, cast to the signature's types."""
    columns = {}
    for column in featurizer.feature_columns:
        values = frame[column["name"]]
        if column["kind"] == "numeric":
            values = pd.to_numeric(values, errors="coerce")
            if column["mlflow_type"] == "long" and not values.isna().any():
                values = values.astype("int64")
            else:
                values = values.astype("float64")
        elif column["kind"] == "datetime":
            values = pd.to_datetime(values, errors="coerce")
        elif column["mlflow_type"] == "boolean" and pd.api.types.is_bool_dtype(values):
            pass
        else:
            values = values.astype(object).where(values.notna(), None).map(lambda v: v if v is None else str(v))
        columns[column["name"]] = values
    return pd.DataFrame(columns, index=frame.index)


def save_model(
    path: str | os.PathLike,
    estimator,
    featurizer: Featurizer,
    adapter,
    *,
    input_example: pd.DataFrame,
    metadata: dict | None = None,
) -> str:
    """Writes the model directory at `path` atomically: nothing is left there unless every part was written."""
    import mlflow.pyfunc
    from mlflow.models import Model
    from mlflow.models.utils import _save_example

    featurizer.check_columns(input_example, "the input example")
    meta = {
        "framework": adapter.framework,
        "adapter": adapter_name(adapter),
        "task": featurizer.task,
        "classes": featurizer.classes,
        "target_column": featurizer.target_column,
        "feature_columns": featurizer.feature_names,
        "libraries": library_versions(tuple(getattr(adapter, "libraries", ()))),
        **(metadata or {}),
    }
    json.dumps(meta)  # fails here, before anything is written, if the metadata is not JSON
    with atomic_dir(path) as tmp:
        mlflow_model = Model()
        adapter.save(estimator, featurizer, tmp, mlflow_model)
        featurizer.save(os.path.join(tmp, FEATURIZER_DIR))
        example = conform(featurizer, input_example.head(INPUT_EXAMPLE_ROWS)).reset_index(drop=True)
        _save_example(mlflow_model, example, tmp)
        mlflow_model.signature = signature_for(featurizer)
        mlflow_model.flavors.pop(mlflow.pyfunc.FLAVOR_NAME, None)  # the framework's pyfunc takes features, not rows
        mlflow.pyfunc.add_to_model(
            mlflow_model,
            loader_module=__name__,
            conda_env="conda.yaml" if os.path.isfile(os.path.join(tmp, "conda.yaml")) else None,
            python_env="python_env.yaml" if os.path.isfile(os.path.join(tmp, "python_env.yaml")) else None,
        )
        mlflow_model.metadata = {METADATA_KEY: meta}
        mlflow_model.save(os.path.join(tmp, "MLmodel"))
    return str(path)


@dataclass
class TabularModel:
    """A loaded model: raw rows in, labels (classification) or values (regression) out."""

    path: str
    featurizer: Featurizer
    metadata: dict
    input_columns: list[tuple[str, str]]
    scorer: Callable[[pd.DataFrame], np.ndarray]

    @property
    def task(self) -> str:
        return self.featurizer.task

    @property
    def classes(self) -> list | None:
        return self.featurizer.classes

    @property
    def framework(self) -> str:
        return self.metadata.get("framework", "")

    def _scores(self, frame: pd.DataFrame) -> np.ndarray:
        if not isinstance(frame, pd.DataFrame):
            frame = pd.DataFrame(frame)
        self.featurizer.check_columns(frame, "the input rows")
        if frame.empty:
            raise ValueError("no rows to predict")
        return np.asarray(self.scorer(conform(self.featurizer, frame)))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Labels for classification, values for regression."""
        scores = self._scores(frame)
        if self.task == CLASSIFICATION:
            return self.featurizer.decode(np.argmax(scores, axis=1))
        return scores.reshape(-1).astype(np.float64)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities (n, n_classes), columns in the order of `classes`."""
        if self.task != CLASSIFICATION:
            raise ValueError("predict_proba is for classification models; this one is a regression model")
        scores = self._scores(frame).astype(np.float64)
        if scores.ndim != 2 or scores.shape[1] != len(self.classes):
            raise ValueError(
                f"the {self.framework} scorer returned shape {scores.shape}, expected (n, {len(self.classes)})"
            )
        return scores


def _mlmodel(path: str):
    from mlflow.models import Model

    mlmodel = Path(path) / "MLmodel"
    if not mlmodel.is_file():
        raise FileNotFoundError(f"not a model directory: {mlmodel} is missing")
    return Model.load(str(mlmodel))  # YAML, read with yaml.safe_load


def _metadata(mlflow_model, path: str) -> dict:
    meta = (mlflow_model.metadata or {}).get(METADATA_KEY)
    if not meta:
        raise ValueError(
            f"{Path(path) / 'MLmodel'} has no '{METADATA_KEY}' metadata: it was not written by kfp-ct's save_model"
        )
    return meta


def read_metadata(path: str | os.PathLike) -> dict:
    """The catalog's metadata in a model directory's MLmodel file (plain YAML: nothing is loaded or imported)."""
    return _metadata(_mlmodel(str(path)), str(path))


def _input_columns(mlflow_model) -> list[tuple[str, str]]:
    signature = mlflow_model.signature
    specs = signature.inputs.inputs if signature else []
    return [(spec.name, getattr(spec.type, "name", str(spec.type))) for spec in specs]


def read_signature(path: str | os.PathLike) -> tuple[list[tuple[str, str]], dict]:
    """(the input columns as (name, MLflow type), the catalog's metadata) of a model directory, from its MLmodel
    file alone (nothing is loaded or imported)."""
    mlflow_model = _mlmodel(str(path))
    return _input_columns(mlflow_model), _metadata(mlflow_model, str(path))


def refuse_pickles(path: str | os.PathLike, mlflow_model=None) -> None:
    """Raises ValueError naming the file when the model folder `path` holds a pickle: a file named as one (.pkl,
    .pickle, .cloudpickle, .joblib), or the file of a flavor whose MLmodel entry says pickle or cloudpickle."""
    path = str(path)
    for root, _, files in os.walk(path):
        for name in sorted(files):
            if name.lower().endswith(PICKLE_SUFFIXES):
                raise ValueError(
                    f"{os.path.join(root, name)}: pickle files in a model folder are refused (loading one runs "
                    "code); kfp-ct models hold skops, torch weights or .keras files only"
                )
    mlflow_model = mlflow_model if mlflow_model is not None else _mlmodel(path)
    for flavor, conf in mlflow_model.flavors.items():
        serialization = str(conf.get("serialization_format", "")).lower()
        if serialization in PICKLE_FORMATS:
            file = os.path.join(path, str(conf.get("pickled_model") or conf.get("model_data") or flavor))
            raise ValueError(
                f"{file}: the MLmodel's {flavor} flavor says serialization_format {serialization}; pickle and "
                "cloudpickle models are refused (loading one runs code)"
            )


def _required(file: str | os.PathLike) -> str:
    if not os.path.isfile(file):
        raise FileNotFoundError(f"{file} is missing: the model folder was not written by this version of kfp-ct")
    return str(file)


def check_skops(file: str | os.PathLike, trusted: list[str]) -> str:
    """`file` when it is a skops file that needs no types beyond skops' defaults and exactly those in `trusted`;
    otherwise ValueError naming the file (and the types)."""
    from kfp_ct.components._common.featurizer import skops_io

    file = _required(file)
    try:
        needed = skops_io().get_untrusted_types(file=file)
    except Exception as err:  # noqa: BLE001 - not a skops archive (a pickle renamed, a broken zip)
        raise ValueError(f"{file} is not a readable skops file: {type(err).__name__}: {err}") from None
    refused = sorted(set(needed) - set(trusted))
    if refused:
        raise ValueError(f"{file} holds types the catalog does not trust: {', '.join(refused)}")
    return file


def load_skops(file: str | os.PathLike, trusted: list[str]):
    """The object in the skops file `file`, trusting exactly the type names in `trusted` beyond skops' own
    defaults (see `check_skops`)."""
    from kfp_ct.components._common.featurizer import skops_io

    return skops_io().load(check_skops(file, trusted), trusted=list(trusted))


def load_torch_weights(file: str | os.PathLike) -> dict:
    """The state dict (names -> tensors) in the torch file `file`, read with `torch.load(weights_only=True)` (which
    unpickles tensors and plain containers only) onto the CPU."""
    import torch

    file = _required(file)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - weights_only refuses any global it does not know
        lines = str(err).splitlines() or [""]
        reason = next((line.strip() for line in lines if "WeightsUnpickler error" in line), lines[0])
        reason = reason.split(". Please")[0]
        raise ValueError(f"{file} does not load as torch weights (weights_only=True): {reason}") from None
    if not isinstance(state, dict) or not all(
        isinstance(name, str) and isinstance(value, torch.Tensor) for name, value in state.items()
    ):
        raise ValueError(f"{file} does not hold a state dict (parameter names -> tensors)")
    return state


def load_keras(file: str | os.PathLike):
    """The Keras model in the `.keras` file `file`, loaded with `safe_mode=True` (no Lambda layers or other code
    from the file) and uncompiled."""
    import keras

    file = _required(file)
    if not file.endswith(".keras"):
        raise ValueError(f"{file}: only the .keras format is loaded")
    try:
        return keras.saving.load_model(file, compile=False, safe_mode=True)
    except Exception as err:  # noqa: BLE001 - an unsafe or broken file
        raise ValueError(
            f"{file} does not load as a Keras model (safe_mode=True): {type(err).__name__}: {err}"
        ) from None


def load_model(path: str | os.PathLike) -> TabularModel:
    """Loads a model directory written by `save_model`: the adapter comes from `ADAPTERS`, its files are read in
    their safe formats, and pickles are refused (see `refuse_pickles`)."""
    path = str(path)
    mlflow_model = _mlmodel(path)
    meta = _metadata(mlflow_model, path)
    adapter = resolve_adapter(str(meta.get("adapter", "")))
    refuse_pickles(path, mlflow_model)
    check_skops(os.path.join(path, FEATURIZER_DIR, TRANSFORMER_FILE), FEATURIZER_TRUSTED_TYPES)
    featurizer = load_featurizer(os.path.join(path, FEATURIZER_DIR))
    return TabularModel(
        path=path,
        featurizer=featurizer,
        metadata=meta,
        input_columns=_input_columns(mlflow_model),
        scorer=adapter.load(path, featurizer),
    )


def load_champion(
    model_name: str, tracking_uri: str | None, dst: str | os.PathLike, alias: str | None = None
) -> tuple[str, TabularModel] | None:
    """(version, loaded model) of the `alias` (champion) of `model_name`, downloaded under `dst`; None only when
    there is no such alias at all (tracking.resolve_alias). An alias that cannot be resolved, downloaded or loaded
    raises tracking.AliasError naming the alias, the version and why."""
    from kfp_ct.components._common import tracking

    alias = alias or tracking.CHAMPION
    found = tracking.champion(model_name, tracking_uri, dst=dst, alias=alias)
    if found is None:
        return None
    version, path = found
    try:
        return version, load_model(path)
    except Exception as err:
        raise tracking.AliasError(
            f"the '{alias}' alias of '{model_name}' points at version {version}, which cannot be loaded: "
            f"{type(err).__name__}: {err}"
        ) from err


class _PyfuncModel:
    """What `mlflow.pyfunc.load_model` wraps: predict(frame) -> labels or values."""

    def __init__(self, model: TabularModel):
        self.model = model

    def predict(self, model_input: Any, params: dict | None = None):
        return self.model.predict(model_input)

    def get_raw_model(self) -> TabularModel:
        return self.model


def _load_pyfunc(path: str):
    """The python_function flavor's loader (MLflow calls it with the model directory)."""
    return _PyfuncModel(load_model(path))
