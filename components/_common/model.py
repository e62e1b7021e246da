"""The catalog's model format: one MLflow model directory that takes raw rows, whatever framework trained it.

A model artifact is a directory:

    {path}/MLmodel              flavors: python_function (this module's loader: raw rows in, labels or values out)
                                and the framework's own (sklearn, pytorch, keras, ...); the signature over the RAW
                                feature columns; metadata (framework, adapter, task, classes, library versions,
                                train data sha256 and URI, hyperparameters, seed, validation metrics, MLflow run)
    {path}/input_example.json   a few raw rows
    {path}/featurizer/          the fitted featurizer (see kfp_ct.components.featurize.core)
    {path}/...                  the framework's files, written by its adapter

Frameworks plug in through an adapter class in their trainer's module, named in the metadata as
"module:Class" (for example "kfp_ct.components.train_sklearn.core:SklearnAdapter"):

    class MyAdapter:
        framework = "torch"          # short name, recorded in the metadata
        libraries = ("torch",)       # distributions whose versions are recorded
        def save(self, estimator, featurizer, path, mlflow_model) -> None:
            '''Writes the estimator under the (empty) directory `path`, typically with
            mlflow.<flavor>.save_model(estimator, path, mlflow_model=mlflow_model, ...), which adds its flavor.'''
        def load(self, path, featurizer) -> Callable[[pd.DataFrame], np.ndarray]:
            '''A scorer: raw feature rows -> class probabilities (n, n_classes) for classification, or predicted
            values (n,) for regression. `featurizer.transform(frame)` gives the float32 matrix.'''

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
from kfp_ct.components.featurize.core import CLASSIFICATION, Featurizer, load_featurizer

FEATURIZER_DIR = "featurizer"
METADATA_KEY = "kfp_ct"
BASE_LIBRARIES = ("kfp-ct", "mlflow", "scikit-learn", "numpy", "pandas", "pyarrow", "skops")
INPUT_EXAMPLE_ROWS = 5


def adapter_name(adapter) -> str:
    return f"{type(adapter).__module__}:{type(adapter).__name__}"


def resolve_adapter(name: str):
    """The adapter instance a model's metadata names; only the catalog's own modules are imported."""
    module_name, _, class_name = name.partition(":")
    if not module_name.startswith("kfp_ct.") or not class_name:
        raise ValueError(f"model adapter '{name}' is not a kfp_ct 'module:Class' name")
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


def read_metadata(path: str | os.PathLike) -> dict:
    """The catalog's metadata in a model directory's MLmodel file."""
    from mlflow.models import Model

    mlmodel = Path(path) / "MLmodel"
    if not mlmodel.is_file():
        raise FileNotFoundError(f"not a model directory: {mlmodel} is missing")
    meta = (Model.load(str(mlmodel)).metadata or {}).get(METADATA_KEY)
    if not meta:
        raise ValueError(f"{mlmodel} has no '{METADATA_KEY}' metadata: it was not written by kfp-ct's save_model")
    return meta


def load_model(path: str | os.PathLike) -> TabularModel:
    """Loads a model directory written by `save_model`."""
    from mlflow.models import Model

    path = str(path)
    meta = read_metadata(path)
    featurizer = load_featurizer(os.path.join(path, FEATURIZER_DIR))
    adapter = resolve_adapter(meta["adapter"])
    signature = Model.load(os.path.join(path, "MLmodel")).signature
    specs = signature.inputs.inputs if signature else []
    inputs = [(spec.name, getattr(spec.type, "name", str(spec.type))) for spec in specs]
    return TabularModel(
        path=path, featurizer=featurizer, metadata=meta, input_columns=inputs, scorer=adapter.load(path, featurizer)
    )


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
