"""Featurize: split a dataset into train and test, and fit a featurizer on the train split only.

The featurizer itself (its transformers, file format and loader) is `kfp_ct.components._common.featurizer`; which
kind each column is and which task a target makes is `kfp_ct.components._common.schema`'s rule.

featurize writes its three outputs each atomically, the featurizer last, and tags both splits' Parquet files with
their split and the splits' id (a hash of both splits' rows: the same data and seed give the same files): a
featurizer exists only once both splits are in place, and a reader of a split checks its tags against the
featurizer (`check_split`), so a split that another (e.g. a killed) featurize run left is never read as this
featurizer's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kfp_ct.components._common import capture, schema
from kfp_ct.components._common.featurizer import Featurizer, build_transformer, label_key, split_id, to_datetime
from kfp_ct.components._common.results import Result
from kfp_ct.components._common.schema import CLASSIFICATION, REGRESSION

# ----------------------------------------------------------------------------------------------- fitting


def fit_featurizer(
    train: pd.DataFrame,
    target_column: str,
    task: str,
    time_column: str | None = None,
    exclude_columns: list[str] | None = None,
    impute_non_finite: bool = False,
) -> Featurizer:
    """Fits a featurizer on the train split: every column but the target (and `exclude_columns`) is a feature; with
    `impute_non_finite` inf and -inf in numeric features are imputed as missing values, in training and serving."""
    exclude = set(exclude_columns or ()) | {target_column}
    names = [name for name in train.columns if name not in exclude]
    if not names:
        raise ValueError(f"no feature columns left: the data holds only {', '.join(map(str, train.columns))}")
    feature_columns, categories = [], {}
    for name in names:
        column_type = schema.series_type(train[name])
        kind = schema.series_kind(train[name])
        if kind is None:
            raise ValueError(
                f"column '{name}' is of type {column_type} ({train[name].dtype}): a feature must be numeric, "
                "categorical or a date/time; pass it in exclude_columns"
            )
        feature_columns.append(
            {
                "name": str(name),
                "kind": kind,
                "mlflow_type": schema.mlflow_type(column_type, kind),
                "dtype": str(train[name].dtype),
            }
        )
        if kind == schema.CATEGORICAL:
            categories[name] = int(train[name].nunique(dropna=False))
    classes = None
    if task == CLASSIFICATION:
        classes = sorted({label_key(value) for value in train[target_column].dropna()}, key=_sort_key)
    transformer = build_transformer(feature_columns, len(train), categories, impute_non_finite)
    featurizer = Featurizer(
        transformer=transformer,
        feature_columns=feature_columns,
        target_column=target_column,
        task=task,
        classes=classes,
        time_column=time_column,
    )
    x, _ = featurizer.split_xy(train)
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Skipping features without any observed values.*")
        transformer.fit(x)
    return featurizer


def check_finite(frame: pd.DataFrame, names, remedy: str) -> None:
    """Raises ValueError naming the float columns among `names` that hold inf or -inf, and how many each."""
    counts = {}
    for name in names:
        if pd.api.types.is_float_dtype(frame[name]):
            n = int(np.isinf(frame[name].to_numpy(dtype=np.float64, na_value=np.nan)).sum())
            if n:
                counts[name] = n
    if counts:
        found = ", ".join(f"'{name}' ({n} of {len(frame)} rows)" for name, n in counts.items())
        raise ValueError(f"column(s) {found} hold inf or -inf: {remedy}")


def _sort_key(value):
    return (0, value, "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0, str(value))


# ----------------------------------------------------------------------------------------------- splitting


def check_target(frame: pd.DataFrame, target_column: str, what: str = "the dataset") -> None:
    if target_column not in frame.columns:
        raise ValueError(
            f"target column '{target_column}' is not in {what}; its columns are: {', '.join(map(str, frame.columns))}"
        )
    nulls = frame[target_column].isna()
    if nulls.any():
        rows = frame.index[nulls][:5].tolist()
        raise ValueError(
            f"target column '{target_column}' has {int(nulls.sum())} null label(s) in {what} "
            f"(first rows: {rows}): drop or fill them before featurizing"
        )


def time_values(values: pd.Series, time_column: str) -> pd.Series:
    """A time column as numbers or datetimes that sort in time order. Text must be ISO 8601 throughout: a value that
    does not parse raises ValueError naming the column and the value (text would sort by characters, not time)."""
    if pd.api.types.is_datetime64_any_dtype(values) or (
        pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    ):
        return to_datetime(values) if pd.api.types.is_datetime64_any_dtype(values) else values
    present = values.dropna()
    is_text = present.map(lambda value: isinstance(value, str)).all()
    parsed = (
        pd.to_datetime(present, errors="coerce", format="ISO8601" if is_text else None) if len(present) else present
    )
    bad = present[parsed.isna()]
    if len(bad):
        raise ValueError(
            f"time column '{time_column}' holds {len(bad)} value(s) that are not ISO 8601 times, e.g. "
            f"{bad.iloc[0]!r}: every time must parse (in one format) to split by time"
        )
    return to_datetime(values)


def split(
    frame: pd.DataFrame,
    target_column: str,
    task: str,
    test_fraction: float = 0.2,
    seed: int = 0,
    time_column: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Deterministic train/test split: by time when `time_column` is given (the latest `test_fraction` of rows, ties
    kept together, is the test split), else stratified by class for classification, else shuffled."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    if len(frame) < 2:
        raise ValueError(f"the dataset has {len(frame)} row(s): at least 2 are needed to split it")
    if time_column:
        if time_column not in frame.columns:
            raise ValueError(
                f"time column '{time_column}' is not in the data; its columns are: {', '.join(map(str, frame.columns))}"
            )
        times = time_values(frame[time_column], time_column)
        if times.isna().any():
            raise ValueError(
                f"time column '{time_column}' has {int(times.isna().sum())} missing or unparseable "
                "value(s): every row needs a time to be split by time"
            )
        order = np.argsort(times.to_numpy(), kind="stable")
        n_test = max(1, int(round(test_fraction * len(frame))))
        cut = times.iloc[order[len(frame) - n_test]]
        is_test = (times >= cut).to_numpy()
        train, test = frame[~is_test], frame[is_test]
        if train.empty:
            raise ValueError(f"the train split is empty: every row has the latest time ({cut}) in '{time_column}'")
    else:
        from sklearn.model_selection import train_test_split

        stratify, singles = None, frame.iloc[:0]
        if task == CLASSIFICATION:
            # a class with a single row goes to train, so that every class is seen in training
            counts = frame[target_column].value_counts()
            is_single = frame[target_column].isin(counts.index[counts < 2]).to_numpy()
            singles, frame = frame[is_single], frame[~is_single]
            counts = counts[counts >= 2]
            n_test = int(np.ceil(test_fraction * len(frame)))
            if len(counts) and n_test >= len(counts) and len(frame) - n_test >= len(counts):
                stratify = frame[target_column]
        if len(frame) < 2:
            raise ValueError(
                f"too few rows to split: {len(frame) + len(singles)} row(s), "
                f"{len(singles)} of them the only row of their class"
            )
        train, test = train_test_split(frame, test_size=test_fraction, random_state=seed, stratify=stratify)
        train = pd.concat([train, singles])
        train, test = train.sort_index(), test.sort_index()
    for name, part in (("train", train), ("test", test)):
        if part.empty:
            raise ValueError(f"the {name} split is empty ({len(frame)} rows, test_fraction={test_fraction})")
    return train.reset_index(drop=True), test.reset_index(drop=True)


def target_task(target: pd.Series, task: str | None = None) -> str:
    """`task` when given (checked), else the task `schema.infer_task` gives the target column."""
    if task is not None:
        if task not in (CLASSIFICATION, REGRESSION):
            raise ValueError(f"unknown task '{task}': expected classification or regression")
        return task
    inferred = schema.series_task(target)
    if inferred is None:
        raise ValueError(
            f"target column '{target.name}' is of type {schema.series_type(target)}: no task follows from it (a "
            "target is text, boolean or a number); pass task"
        )
    return inferred


def check_classes(train: pd.DataFrame, target_column: str) -> None:
    distinct = train[target_column].nunique()
    if distinct < 2:
        only = train[target_column].iloc[0] if len(train) else None
        raise ValueError(
            f"target column '{target_column}' has a single class ({only!r}) in the train split: "
            "a classifier needs at least two"
        )


@dataclass
class FeaturizeResult(Result):
    """What featurize decided and wrote: the task and classes, the metadata of the train and test splits, and the
    number of feature columns and of output features; `metadata` (of the featurizer artifact): task, classes,
    target_column, features, output_features."""

    task: str
    classes: list | None
    train: dict
    test: dict
    features: int
    output_features: int


def featurize(
    *,
    dataset_path: str,
    target_column: str,
    train_path: str,
    test_path: str,
    featurizer_path: str,
    test_fraction: float = 0.2,
    seed: int = 0,
    time_column: str | None = None,
    task: str | None = None,
    exclude_columns: list[str] | None = None,
    impute_non_finite: bool = False,
    source_uri: str = "",
    labels_uri: str = "",
    label_id_column: str = capture.ID_COLUMN,
) -> FeaturizeResult:
    """Splits the dataset at `dataset_path` and fits the featurizer on its train split.

    A dataset of captured traffic (`_common.capture`) is learnt from its rows that have a label in `labels_uri`
    (joined on `label_id_column`): their input columns and the target, with `time` (when the request was served)
    kept in the splits but not a feature.
    Writes the train and test splits (Parquet, every column kept, tagged with `source_uri` and the splits' id) and
    the featurizer directory; nothing is written unless all three succeed.
    """
    from kfp_ct.components._common import datasets

    frame = datasets.read_frame(dataset_path)
    frame, labelled = _labelled(frame, dataset_path, target_column, labels_uri, label_id_column)
    if labelled is not None and "time" not in (exclude_columns or ()):
        exclude_columns = [*(exclude_columns or ()), "time"]  # when it was served: kept for the split, not a feature
    if frame.empty:
        raise ValueError(f"{dataset_path}: the dataset has no rows")
    check_target(frame, target_column)
    check_finite(frame, [target_column], "a target must be a finite number (inf cannot be imputed)")
    unknown = [name for name in (exclude_columns or ()) if name not in frame.columns]
    if unknown:
        raise ValueError(f"exclude_columns names column(s) not in the data: {', '.join(unknown)}")
    if not impute_non_finite:
        features = [name for name in frame.columns if name not in {target_column, *(exclude_columns or ())}]
        check_finite(frame, features, "fix the data, or pass impute_non_finite=True to impute them as missing values")
    task = target_task(frame[target_column], task)
    if task == CLASSIFICATION:
        check_classes(frame, target_column)
    train, test = split(frame, target_column, task, test_fraction, seed, time_column)
    if task == CLASSIFICATION:
        check_classes(train, target_column)
    featurizer = fit_featurizer(train, target_column, task, time_column, exclude_columns, impute_non_finite)
    featurizer.extra.update(
        {
            "test_fraction": test_fraction,
            "seed": seed,
            "exclude_columns": list(exclude_columns or []),
            "impute_non_finite": impute_non_finite,
        }
    )
    ids = split_id(train, test)
    featurizer.extra["split_id"] = ids
    written = []
    try:
        train_meta = datasets.write_frame(train, train_path, source_uri, {"split_id": ids, "split": "train"})
        written.append(train_path)
        test_meta = datasets.write_frame(test, test_path, source_uri, {"split_id": ids, "split": "test"})
        written.append(test_path)
        featurizer.save(featurizer_path)  # last: it vouches for the two splits above
    except BaseException:
        for path in written:
            Path(path).unlink(missing_ok=True)
        raise
    features, output_features = len(featurizer.feature_columns), len(featurizer.spec()["output_features"])
    return FeaturizeResult(
        task=task,
        classes=featurizer.classes,
        train={**train_meta, "split": "train", "split_id": ids},
        test={**test_meta, "split": "test", "split_id": ids},
        features=features,
        output_features=output_features,
        metadata={
            "task": task,
            "classes": featurizer.classes,
            "target_column": target_column,
            "features": features,
            "output_features": output_features,
            **({"labels": labelled} if labelled is not None else {}),
        },
    )


def _labelled(frame, dataset_path: str, target_column: str, labels_uri: str, id_column: str):
    """(the rows to learn from, the label join's counts or None): captured traffic needs its labels."""
    if capture.input_columns(list(frame.columns)) is None:
        if labels_uri:
            raise ValueError(
                f"labels_uri is for captured traffic (kfp-ct serve --capture, kfp-ct capture-sink), but {dataset_path} "
                f"has no captured predictions; its columns are: {', '.join(map(str, frame.columns))}"
            )
        return frame, None
    if not labels_uri:
        raise ValueError(
            f"{dataset_path} is captured traffic, which holds no '{target_column}': pass labels_uri, the ground truth "
            f"keyed by {id_column}"
        )
    examples, stated = capture.labelled_examples(frame, labels_uri, target_column, id_column)
    if examples.empty:
        raise ValueError(
            f"no captured row of {dataset_path} has a label in {labels_uri} (joined on {', '.join(stated['join_key'])}"
            f"; {stated['captured_rows']} captured rows, {stated['labels_without_prediction']} labels without one)"
        )
    return examples.reset_index(drop=True), stated
