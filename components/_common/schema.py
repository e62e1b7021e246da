"""What a column is, and what a target makes the task: the one rule every component applies.

A column's **type** is decided by how the dataset stores it (its Arrow type in the Parquet file, or the pandas dtype
that Arrow type reads as), never by its values: validate and monitor_drift stream Arrow batches and reach the answer
featurize reaches on a DataFrame of the same file. The types (validate's schema vocabulary):

    int, float          numbers (decimals are float)
    string, bool        text and booleans
    datetime, date      timestamps and calendar dates
    null                a column with no value at all (Arrow's null type)
    other               anything else (binary, lists, structs, durations, ...)

A dictionary-encoded column (pandas' category dtype) has the type of its values.

A column's **kind** is what a model makes of it: `numeric` (int, float), `categorical` (string, bool, and any
dictionary-encoded column: its values are labels), `datetime` (datetime, date, and **date text**: a plain string
column whose first `TEXT_SAMPLE` non-null values are all ISO 8601 dates or times, `text_is_datetime`), or None (null,
other: neither featurized nor tested). Date text is the one rule that reads values, so only the steps that have them
at hand apply it (featurize, and through the model's signature the server); validate checks such a column as the
string it is stored as, and monitor_drift tests it as text, as Evidently does (`column_kind` decides from the type
alone; `series_kind` adds date text). ingest stores ISO 8601 dates and times of a CSV with their date/timestamp
types, so after ingest every step sees the same kind. Its **MLflow type** (the model's signature, what the server
checks payloads against) follows from type and kind: long, double, datetime, boolean or string (`mlflow_type`); the
server reads numbers for long and double (`NUMERIC_MLFLOW_TYPES`), ISO 8601 text for datetime, and text otherwise.

Two columns (a reference and a current one, or a schema and a dataset) have **comparable types** when the types
are equal or both are numbers (int <-> float: values still compare as numbers).

The **task** (`infer_task`): a string, bool or dictionary-encoded target is a class label (classification); an int
target is one when it has at most `MAX_INTEGER_CLASSES` (20) distinct values and at most
max(`ALWAYS_CLASSES`, `CLASS_SHARE` x its non-null values) of them, that is a few values each seen on average in
20 rows or more (binary and three-valued integers are labels at any size); any other int target, and every float
target, is regression. Why: ratings, weekdays, months and codes are small integer label sets; counts, ages and
amounts have more values, or (in a small dataset) too few rows per value for a class to be learnt, so they are
quantities. A float target is a measurement even when its values happen to be integral. Other types have no task.

`MAX_CLASSES` (100) is the default of every `max_classes` parameter: the most classes a trainer accepts, and above
which validate warns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

CLASSIFICATION, REGRESSION = "classification", "regression"
NUMERIC, CATEGORICAL, DATETIME = "numeric", "categorical", "datetime"
NUMBER_TYPES = ("int", "float")
NUMERIC_MLFLOW_TYPES = ("long", "double", "integer", "float")  # what MLflow signatures call numbers
MAX_INTEGER_CLASSES = 20  # an int target with more distinct values is a quantity (regression)
ALWAYS_CLASSES = 3  # an int target with at most this many distinct values is a label whatever the row count
CLASS_SHARE = 0.05  # else a label has at most this share of its rows as distinct values (>= 20 rows a class)
MAX_CLASSES = 100  # default max_classes: the trainers refuse more classes, validate warns above it
TEXT_SAMPLE = 1000  # date text: this many first non-null values of a text column are all ISO 8601 dates or times

_KINDS = {"int": NUMERIC, "float": NUMERIC, "string": CATEGORICAL, "bool": CATEGORICAL, "datetime": DATETIME}
_KINDS["date"] = DATETIME


def column_type(arrow_type: pa.DataType) -> str:
    """The type (int, float, string, bool, datetime, date, null, other) of a column stored as `arrow_type`."""
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    checks = [
        (pa.types.is_boolean, "bool"),
        (pa.types.is_integer, "int"),
        (pa.types.is_floating, "float"),
        (pa.types.is_decimal, "float"),
        (pa.types.is_string, "string"),
        (pa.types.is_large_string, "string"),
        (pa.types.is_timestamp, "datetime"),
        (pa.types.is_date, "date"),
        (pa.types.is_null, "null"),
    ]
    if hasattr(pa.types, "is_string_view"):
        checks.append((pa.types.is_string_view, "string"))
    return next((name for check, name in checks if check(arrow_type)), "other")


def series_type(series: pd.Series) -> str:
    """The type of a pandas column, as `column_type` gives it for the Arrow type the column was read from (int64
    -> int, object holding text -> string, object holding `datetime.date` -> date, ...)."""
    import pandas as pd

    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return series_type(pd.Series(dtype.categories))
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        if inferred == "empty":
            return "null"
        if inferred == "boolean":
            return "bool"
        return {"date": "date", "datetime": "datetime", "datetime64": "datetime", "bytes": "other"}.get(
            inferred, "string"
        )
    return "other"


def kind_of(column_type: str, dictionary: bool = False) -> str | None:
    """numeric, categorical or datetime (None for null and other) of a column of `column_type`; a
    dictionary-encoded column is categorical."""
    if dictionary and column_type != "null":
        return CATEGORICAL
    return _KINDS.get(column_type)


def column_kind(arrow_type: pa.DataType) -> str | None:
    """The kind of a column stored as `arrow_type`."""
    import pyarrow as pa

    return kind_of(column_type(arrow_type), pa.types.is_dictionary(arrow_type))


def text_is_datetime(series: pd.Series) -> bool:
    """Whether a text column is date text: its first `TEXT_SAMPLE` non-null values all look like and parse as ISO 8601
    dates or times (YYYY-MM-DD, with an optional time and zone)."""
    import pandas as pd

    sample = series.dropna().head(TEXT_SAMPLE)
    if not len(sample) or not sample.map(lambda value: isinstance(value, str)).all():
        return False
    if not (sample.str.len().between(8, 35).all() and sample.str.match(r"^\d{4}-\d{2}-\d{2}").all()):
        return False
    return bool(pd.to_datetime(sample, errors="coerce", format="ISO8601").notna().all())


def series_kind(series: pd.Series) -> str | None:
    """The kind of a pandas column: by its type (the category dtype is dictionary-encoded in Parquet: categorical),
    and date text is datetime."""
    import pandas as pd

    if isinstance(series.dtype, pd.CategoricalDtype):
        return kind_of(series_type(series), dictionary=True)
    column_type = series_type(series)
    if column_type == "string" and text_is_datetime(series):
        return DATETIME
    return kind_of(column_type)


def mlflow_type(column_type: str, kind: str | None) -> str:
    """The MLflow signature type of a column of `column_type` and `kind`: long for int (MLflow refuses int64 ->
    double), double for other numbers, datetime for dates and times, boolean, else string (a dictionary-encoded
    column of numbers too: its values are labels)."""
    if kind == NUMERIC:
        return "long" if column_type == "int" else "double"
    if kind == DATETIME:
        return "datetime"
    return "boolean" if column_type == "bool" else "string"


def comparable(expected: str | None, found: str | None) -> bool:
    """Whether a column of type `found` can be checked against one of type `expected`."""
    return expected == found or {expected, found} == set(NUMBER_TYPES)


def infer_task(column_type: str, distinct: int | None, values: int, dictionary: bool = False) -> str | None:
    """The task a target of `column_type` makes (see the module docstring), from its number of `distinct` non-null
    values (None: more than were counted) among `values` non-null values."""
    if column_type in ("string", "bool") or (dictionary and column_type != "null"):
        return CLASSIFICATION
    if column_type == "int":
        few = distinct is not None and distinct <= MAX_INTEGER_CLASSES
        if few and distinct <= max(ALWAYS_CLASSES, CLASS_SHARE * values):
            return CLASSIFICATION
        return REGRESSION
    return REGRESSION if column_type == "float" else None


def series_task(target: pd.Series) -> str | None:
    """`infer_task` of a pandas column."""
    import pandas as pd

    values = target.dropna()
    return infer_task(
        series_type(target), int(values.nunique()), len(values), isinstance(target.dtype, pd.CategoricalDtype)
    )
