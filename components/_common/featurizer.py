"""The featurizer: what featurize fits and every later step loads (trainers, evaluate, the model format, the server).

The featurizer is a scikit-learn transformer (raw feature DataFrame -> float32 matrix): numeric columns are imputed
(median) and standardized (inf and -inf are refused, or imputed as missing with `impute_non_finite`), categorical
columns are imputed and one-hot encoded (ordinal encoded above `MAX_ONE_HOT` categories), both tolerating categories
never seen in training, and date/time columns become their parts (year, month, day, day of week, hour, and a
continuous time). It sits in a Pipeline in front of an estimator and is saved with skops; the few custom classes it
uses live in this module and are named in `SKOPS_TRUSTED`. Which kind a column is (numeric, categorical, datetime)
is `schema.column_kind`'s rule.

A featurizer artifact is a directory:

    {path}/transformer.skops   the fitted transformer (skops format)
    {path}/featurizer.json     feature columns (name, kind, MLflow type), target column, task, classes, time column,
                               and the id of the splits it was fitted with (`split_id`)

A reader of a split checks its tags against the featurizer (`check_split`), so a split that another (e.g. a killed)
featurize run left is never read as this featurizer's. A file without the tags (data of one's own) is not checked.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from kfp_ct.components._common.schema import REGRESSION

TRANSFORMER_FILE = "transformer.skops"
SPEC_FILE = "featurizer.json"
FORMAT_VERSION = 1
MAX_ONE_HOT = 20  # categorical columns with more categories are ordinal encoded
MISSING = "__missing__"
DATETIME_PARTS = ("year", "month", "day", "dayofweek", "hour", "epoch_days")


class DatetimeParts(TransformerMixin, BaseEstimator):
    """Date/time columns (datetime64, dates, or ISO 8601 text) -> year, month, day, day of week, hour and days since
    1970, as floats; unparseable or missing values become NaN (imputed by the next step)."""

    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1] if not hasattr(X, "columns") else len(X.columns)
        return self

    def transform(self, X):
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X, dtype=object))
        columns = []
        for name in frame.columns:
            values = to_datetime(frame[name])
            epoch_days = (values - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)
            for part in DATETIME_PARTS:
                column = epoch_days if part == "epoch_days" else getattr(values.dt, part)
                columns.append(column.astype("float64").to_numpy())
        return np.column_stack(columns) if columns else np.empty((len(frame), 0))

    def get_feature_names_out(self, input_features=None):
        names = list(input_features) if input_features is not None else [f"x{i}" for i in range(self.n_features_in_)]
        return np.asarray([f"{name}_{part}" for name in names for part in DATETIME_PARTS], dtype=object)


class CategoryStrings(TransformerMixin, BaseEstimator):
    """Categorical columns -> text (so mixed types compare), with missing values as one category of their own."""

    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1] if not hasattr(X, "columns") else len(X.columns)
        return self

    def transform(self, X):
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X, dtype=object))
        out = frame.astype(object).where(frame.notna(), MISSING)
        return out.astype(str).to_numpy(dtype=object)

    def get_feature_names_out(self, input_features=None):
        return np.asarray(
            list(input_features) if input_features is not None else [f"x{i}" for i in range(self.n_features_in_)],
            dtype=object,
        )


class NonFiniteAsMissing(TransformerMixin, BaseEstimator):
    """Numeric columns -> float64, with inf and -inf as NaN, so the next step imputes them as missing values (the
    featurizer's first numeric step when it is fitted with `impute_non_finite`)."""

    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1] if not hasattr(X, "columns") else len(X.columns)
        return self

    def transform(self, X):
        values = X.to_numpy(dtype=np.float64, na_value=np.nan) if hasattr(X, "to_numpy") else np.asarray(X, np.float64)
        return np.where(np.isinf(values), np.nan, values)

    def get_feature_names_out(self, input_features=None):
        return np.asarray(
            list(input_features) if input_features is not None else [f"x{i}" for i in range(self.n_features_in_)],
            dtype=object,
        )


class Float32(TransformerMixin, BaseEstimator):
    """The last step: a dense float32 matrix, the input every trainer expects."""

    def fit(self, X, y=None):
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        if hasattr(X, "toarray"):
            X = X.toarray()
        return np.asarray(X, dtype=np.float32)

    def get_feature_names_out(self, input_features=None):
        return np.asarray(
            list(input_features) if input_features is not None else [f"x{i}" for i in range(self.n_features_in_)],
            dtype=object,
        )


# Exactly the types a fitted featurizer holds, beyond what skops trusts by default: its own classes and numpy dtypes.
SKOPS_TRUSTED = [
    f"{__name__}.DatetimeParts",
    f"{__name__}.CategoryStrings",
    f"{__name__}.NonFiniteAsMissing",
    f"{__name__}.Float32",
]
TRUSTED_TYPES = sorted([*SKOPS_TRUSTED, "numpy.dtype"])


@dataclass
class Featurizer:
    """A fitted featurizer and what it was fitted for."""

    transformer: object
    feature_columns: list[dict]  # [{"name", "kind": numeric|categorical|datetime, "mlflow_type"}]
    target_column: str
    task: str
    classes: list | None
    time_column: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return [column["name"] for column in self.feature_columns]

    @property
    def n_classes(self) -> int | None:
        return len(self.classes) if self.classes is not None else None

    def check_columns(self, frame: pd.DataFrame, what: str = "the data") -> None:
        missing = [name for name in self.feature_names if name not in frame.columns]
        if missing:
            raise ValueError(
                f"{what} lacks the feature column(s) {', '.join(missing)}; the featurizer expects: "
                f"{', '.join(self.feature_names)}"
            )

    def features(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The raw feature columns of `frame`, in the featurizer's order."""
        self.check_columns(frame)
        return frame[self.feature_names]

    def encode_target(self, values) -> np.ndarray:
        """Labels -> class indices (classification) or float values (regression), naming bad values."""
        series = pd.Series(values).reset_index(drop=True)
        if series.isna().any():
            rows = series.index[series.isna()][:5].tolist()
            raise ValueError(
                f"target column '{self.target_column}' has {int(series.isna().sum())} null label(s) "
                f"(first rows: {rows}): drop or fill them before featurizing"
            )
        if self.task == REGRESSION:
            try:
                return series.astype("float64").to_numpy()
            except (TypeError, ValueError):
                raise ValueError(
                    f"target column '{self.target_column}' is not numeric, but the task is regression"
                ) from None
        lookup = {label_key(label): index for index, label in enumerate(self.classes)}
        keys = [label_key(value) for value in series]
        unseen = sorted({str(key) for key in keys if key not in lookup})
        if unseen:
            raise ValueError(
                f"target column '{self.target_column}' holds label(s) {', '.join(unseen[:10])} that the "
                f"featurizer never saw in training; its classes are: {self.classes}"
            )
        return np.asarray([lookup[key] for key in keys], dtype=np.int64)

    def decode(self, indices) -> np.ndarray:
        """Class indices -> labels."""
        return np.asarray(self.classes)[np.asarray(indices, dtype=np.int64)]

    def split_xy(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """(raw feature columns, encoded target) of a frame that holds the target column."""
        if self.target_column not in frame.columns:
            raise ValueError(
                f"target column '{self.target_column}' is not in the data; its columns are: "
                f"{', '.join(map(str, frame.columns))}"
            )
        return self.features(frame), self.encode_target(frame[self.target_column])

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw rows -> the float32 feature matrix."""
        return np.asarray(self.transformer.transform(self.features(frame)), dtype=np.float32)

    def spec(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "feature_columns": self.feature_columns,
            "target_column": self.target_column,
            "task": self.task,
            "classes": self.classes,
            "time_column": self.time_column,
            "output_features": [str(name) for name in self.transformer.get_feature_names_out()],
            **self.extra,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Writes the featurizer directory at `path` atomically (a temporary directory renamed into place)."""
        from kfp_ct.components._common.datasets import atomic_dir

        with atomic_dir(path) as tmp:
            skops_io().dump(self.transformer, os.path.join(tmp, TRANSFORMER_FILE))
            with open(os.path.join(tmp, SPEC_FILE), "w") as f:
                json.dump(self.spec(), f, indent=2)


def label_key(value):
    """A hashable key that equates a label with its JSON round trip (numpy ints and floats, Python ints)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return int(value) if float(value).is_integer() else float(value)
    return str(value)


def to_datetime(series: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(series):
        values = series
    else:
        values = pd.to_datetime(
            series,
            errors="coerce",
            format="ISO8601"
            if series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) == "string"
            else None,
        )
    if getattr(values.dt, "tz", None) is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values


def skops_io():
    """`skops.io`, imported without importing torch. skops computes its trusted types at import time from
    scikit-learn's `all_estimators()`, whose `pkgutil.walk_packages` imports every subpackage of sklearn, its vendored
    `externals.array_api_compat.torch` included, and that imports torch wherever torch is installed: 1.2 s on a
    2-core machine (more with CUDA) in every process that loads a featurizer or a scikit-learn model. Marking torch
    absent for that one import changes nothing skops trusts (no estimator comes from torch), and torch stays
    importable afterwards."""
    if "torch" not in sys.modules:
        sys.modules["torch"] = None  # import raises ImportError, which walk_packages skips
        try:
            import skops.io
        finally:
            if sys.modules.get("torch", False) is None:
                del sys.modules["torch"]
    import skops.io

    return skops.io


def split_id(train: pd.DataFrame, test: pd.DataFrame) -> str:
    """The id of a pair of splits: a hash of their rows."""
    import hashlib

    digest = hashlib.sha256()
    for frame in (train, test):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        digest.update(b"|")
    return digest.hexdigest()[:32]


def check_split(featurizer: Featurizer, split: str, path: str | os.PathLike) -> None:
    """Checks that the dataset file at `path`, when featurize wrote it, is the `split` ("train" or "test") written
    together with `featurizer`."""
    from kfp_ct.components._common.datasets import read_tags

    expected, tags = featurizer.extra.get("split_id"), read_tags(path)
    if expected and tags.get("split_id") and (tags["split_id"], tags.get("split")) != (expected, split):
        raise ValueError(
            f"{path} is not the {split} split this featurizer was fitted with (it is the {tags.get('split')} split "
            f"of splits {tags['split_id']}, the featurizer's are {expected}): pass the outputs of one featurize run"
        )


def load_featurizer(path: str | os.PathLike) -> Featurizer:
    """Loads a featurizer directory written by `Featurizer.save`, trusting exactly the types it needs."""
    path = Path(path)
    spec_path, transformer_path = path / SPEC_FILE, path / TRANSFORMER_FILE
    for required in (spec_path, transformer_path):
        if not required.is_file():
            raise FileNotFoundError(f"not a featurizer directory: {required} is missing")
    spec = json.loads(spec_path.read_text())
    if spec.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{spec_path}: featurizer format_version {spec.get('format_version')} is not supported "
            f"(expected {FORMAT_VERSION})"
        )
    transformer = skops_io().load(transformer_path, trusted=trusted_types(transformer_path))
    known = {"format_version", "feature_columns", "target_column", "task", "classes", "time_column", "output_features"}
    return Featurizer(
        transformer=transformer,
        feature_columns=spec["feature_columns"],
        target_column=spec["target_column"],
        task=spec["task"],
        classes=spec["classes"],
        time_column=spec.get("time_column"),
        extra={k: v for k, v in spec.items() if k not in known},
    )


def trusted_types(skops_file: str | os.PathLike) -> list[str]:
    """The types a skops file needs beyond skops' defaults, when each is one of `TRUSTED_TYPES`; anything else (a
    function, another class, even scikit-learn's) is refused by name."""
    needed = skops_io().get_untrusted_types(file=skops_file)
    refused = sorted(set(needed) - set(TRUSTED_TYPES))
    if refused:
        raise ValueError(f"{skops_file} holds types the catalog does not trust: {', '.join(refused)}")
    return needed


def build_transformer(
    feature_columns: list[dict], n_rows: int, categories: dict[str, int], impute_non_finite: bool = False
):
    """The unfitted featurizer for these columns (inf and -inf in numeric ones imputed when `impute_non_finite`)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    by_kind: dict[str, list[str]] = {"numeric": [], "categorical": [], "datetime": []}
    for column in feature_columns:
        by_kind[column["kind"]].append(column["name"])
    one_hot = [name for name in by_kind["categorical"] if categories[name] <= MAX_ONE_HOT]
    ordinal = [name for name in by_kind["categorical"] if categories[name] > MAX_ONE_HOT]
    numeric = Pipeline(
        [("finite", NonFiniteAsMissing())] * impute_non_finite
        + [("impute", SimpleImputer(strategy="median", keep_empty_features=True)), ("scale", StandardScaler())]
    )
    parts = [
        ("numeric", numeric, by_kind["numeric"]),
        (
            "one_hot",
            Pipeline(
                [
                    ("text", CategoryStrings()),
                    ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32)),
                ]
            ),
            one_hot,
        ),
        (
            "ordinal",
            Pipeline(
                [
                    ("text", CategoryStrings()),
                    ("encode", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, dtype=np.float64)),
                    ("scale", StandardScaler()),
                ]
            ),
            ordinal,
        ),
        (
            "datetime",
            Pipeline(
                [
                    ("parts", DatetimeParts()),
                    ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                    ("scale", StandardScaler()),
                ]
            ),
            by_kind["datetime"],
        ),
    ]
    columns = ColumnTransformer(
        [part for part in parts if part[2]], remainder="drop", sparse_threshold=0.0, verbose_feature_names_out=True
    )
    return Pipeline([("columns", columns), ("float32", Float32())])
