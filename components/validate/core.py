"""Validate: infer a dataset's schema and check the dataset against a reference schema, in one streaming pass.

The dataset (a Parquet dataset artifact) is read once, in bounded batches (`datasets.iter_batches`); every figure is
computed per batch with pyarrow.compute and merged, so memory does not grow with the number of rows.

Schema format (`kfp-ct.schema/v1`): one JSON object, written with sorted keys and a 2-space indent so that two
schemas diff line by line; a list of two items (a [value, count] pair, two classes) stays on one line.

    {
      "format": "kfp-ct.schema/v1",
      "rows": 17379,                          # rows in the dataset
      "column_order": ["instant", ...],       # the dataset's columns, in file order
      "max_categories": 100,                  # the cap on tracked categories used when inferring it
      "target": {
        "column": "cnt",
        "type": "int",                        # as in "columns"; null when the column is missing
        "task": "regression",                 # "classification", "regression" or null (not learnable)
        "classes": null                       # sorted class values for classification, else null
      },
      "columns": {
        "<name>": {
          "type": "int",                      # int | float | string | bool | datetime | date | null | other
          "arrow_type": "int64",              # the exact Arrow type of the Parquet column
          "nulls": 0,                         # null values (NaN counts as null)
          "non_finite": 0,                    # inf and -inf values (float columns; 0 for others)
          "null_fraction": 0.0,               # nulls / rows, rounded to 6 digits; null when there are no rows
          "min": 1, "max": 977,               # numbers, dates and datetimes (ISO 8601 text); else null.
                                              # A non-finite float bound is the text "inf" or "-inf".
          "distinct": 869,                    # exact count of distinct non-null values when at most
                                              # max_categories (string, bool, int columns); else null
          "categories": [[0, 8645], ...],     # [value, count] pairs sorted by value, for string, bool and int
                                              # columns with at most max_categories distinct values; else null
          "constant": false                   # exactly one distinct non-null value; null when unknown ("other")
        }
      }
    }

A column's type and the target's task are `kfp_ct.components._common.schema`'s rules (the ones featurize,
monitor_drift and the server apply too): a string, bool or dictionary-encoded target is a class label, an int target
one with few distinct values (at most 20, and few per row), any other int or float target a regression target. Against
a reference, a column with categories there is checked for unseen categories, one with a range for values out of
range.

Anomalies. Blocking ones fail validation (`ValidateResult.raise_for_blocking`); warnings go to the report.

| kind                 | blocking | when                                                                            |
|----------------------|----------|---------------------------------------------------------------------------------|
| empty_dataset        | yes      | the dataset has no rows                                                         |
| all_null             | yes      | a column holds no value at all, so its type cannot be inferred                  |
| target_missing       | yes      | the target column is not in the dataset                                         |
| target_null          | yes      | the target has null values (more than `target_null_tolerance` of the rows)      |
| target_one_class     | yes      | the target has a single distinct value                                          |
| target_type          | yes      | the target is neither numeric, string nor bool                                  |
| target_changed       | yes      | the reference's target column is another column                                 |
| missing_column       | yes      | a column of the reference is not in the dataset                                 |
| extra_column         | yes      | a column of the dataset is not in the reference                                 |
| type_changed         | yes      | a column's type differs from the reference's (other than int <-> float)         |
| null_fraction        | yes      | null fraction > the reference's + `null_tolerance`                              |
| non_finite           | yes      | a float column holds inf or -inf (no reference needed)                          |
| new_nulls            | no       | a column without nulls in the reference has some (blocks with `block_new_nulls`) |
| many_classes         | no       | a classification target has more than `max_classes` classes (trainers refuse)   |
| numeric_type_changed | no       | int became float or float became int; values are still compared as numbers      |
| out_of_range         | no       | share of values outside the reference's [min, max] > `out_of_range_tolerance`   |
| unseen_categories    | no       | share of values not among the reference's categories > `unseen_category_toler.` |
| new_target_class     | no       | the target has a class the reference does not have (any share)                  |
| target_class_missing | no       | a class of the reference does not occur (and more than one class is left)       |
| constant_varied      | no       | a column constant in the reference holds several values (instead of the above)  |
| constant_column      | no       | a column (not the target) holds one value, and did not in the reference         |

With `strict=True` every warning blocks as well.

Captured traffic (`_common.capture`'s layout: request ids, times, versions and answers beside the model's input
columns) is checked on the model's input columns only: its target comes later (a labels source), and a reference
column it does not hold is not a model input (the time column, an excluded column), so neither is an anomaly.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from kfp_ct.components._common import capture, datasets
from kfp_ct.components._common.results import Result
from kfp_ct.components._common.schema import (
    CLASSIFICATION,
    MAX_CLASSES,
    MAX_INTEGER_CLASSES,
    column_type,
    comparable,
    infer_task,
)

FORMAT = "kfp-ct.schema/v1"
RANGE_TYPES = ("int", "float", "datetime", "date")
CATEGORY_TYPES = ("int", "string", "bool")
EXAMPLES = 5
_EPSILON = 1e-9  # tolerance comparisons forgive float rounding (0.7 + 0.1 < 0.8)


@dataclass(frozen=True)
class Anomaly:
    """One finding: on `column` (None for the whole dataset), what was expected and what was found."""

    column: str | None
    kind: str
    expected: str
    found: str
    blocking: bool

    def __str__(self) -> str:
        where = f"column '{self.column}'" if self.column is not None else "dataset"
        return f"{where}: {self.kind}: expected {self.expected}, found {self.found}"


@dataclass
class ValidateResult(Result):
    """The inferred schema of a dataset and every anomaly found in it; `metrics`: rows, columns, anomalies,
    blocking, warnings; `metadata` (of the schema artifact): rows, columns, target, task."""

    dataset_path: str
    schema: dict
    anomalies: list[Anomaly] = field(default_factory=list)
    reference_path: str | None = None

    def __post_init__(self) -> None:
        self.metrics = {
            "rows": self.schema["rows"],
            "columns": len(self.schema["columns"]),
            "anomalies": len(self.anomalies),
            "blocking": len(self.blocking),
            "warnings": len(self.warnings),
        }
        self.metadata = {
            "rows": self.schema["rows"],
            "columns": len(self.schema["columns"]),
            "target": self.schema["target"]["column"],
            "task": self.schema["target"]["task"] or "",
        }

    @property
    def blocking(self) -> list[Anomaly]:
        return [a for a in self.anomalies if a.blocking]

    @property
    def warnings(self) -> list[Anomaly]:
        return [a for a in self.anomalies if not a.blocking]

    def raise_for_blocking(self) -> None:
        """Raises one ValueError that lists every blocking anomaly, if there is any."""
        blocking = self.blocking
        if blocking:
            against = f" against the reference schema {self.reference_path}" if self.reference_path else ""
            lines = "\n".join(f"- {a}" for a in blocking)
            raise ValueError(
                f"validation of {self.dataset_path}{against} found {len(blocking)} blocking "
                f"anomal{'y' if len(blocking) == 1 else 'ies'}:\n{lines}"
            )


# ---- types and values ------------------------------------------------------------------------------------------


def _normalize(array: pa.Array, kind: str) -> pa.Array:
    """Dictionary-decoded, decimals as float64, string views as strings, timestamps in microseconds."""
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if kind == "float" and pa.types.is_decimal(array.type):
        array = pc.cast(array, pa.float64())
    elif kind == "string" and not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        array = pc.cast(array, pa.string())
    elif kind == "datetime" and array.type.unit == "ns":
        array = pc.cast(array, pa.timestamp("us", array.type.tz), safe=False)
    return array


def _to_json(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if hasattr(value, "is_finite"):  # decimal.Decimal
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def _bound(value: Any, kind: str, arrow_type: pa.DataType) -> pa.Scalar:
    """A schema's min/max as an Arrow scalar comparable with a column of `arrow_type` (of schema type `kind`)."""
    if kind in ("int", "float"):
        return pa.scalar(float(value) if isinstance(value, str) else value)
    if kind == "date":
        return pa.scalar(date.fromisoformat(str(value)[:10]), pa.date32())
    moment = datetime.fromisoformat(value)
    if arrow_type.tz is None and moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    elif arrow_type.tz is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return pa.scalar(moment, pa.timestamp("us", arrow_type.tz))


def _share(part: int, whole: int) -> str:
    return f"{part} of {whole} ({part / whole:.2%})" if whole else f"{part} of {whole}"


def _examples(values) -> str:
    return ", ".join(repr(_to_json(v)) for v in list(values)[:EXAMPLES]) + (" ..." if len(values) > EXAMPLES else "")


# ---- one column, streamed --------------------------------------------------------------------------------------


@dataclass
class _Rules:
    """What a column is checked against, taken from the reference schema."""

    low: pa.Scalar | None = None
    high: pa.Scalar | None = None
    categories: pa.Array | None = None


class _ColumnStats:
    """Figures of one column, merged batch by batch; categories are counted until there are too many."""

    def __init__(self, name: str, arrow_type: pa.DataType, max_categories: int, rules: _Rules | None):
        self.name, self.arrow_type, self.kind = name, arrow_type, column_type(arrow_type)
        self.max_categories, self.rules = max_categories, rules
        self.rows = self.nulls = 0
        self.min = self.max = None
        self.counts: dict | None = {} if self.kind in CATEGORY_TYPES else None
        self.out_of_range = self.unseen = self.non_finite = 0
        self.unseen_values: set = set()

    @property
    def values(self) -> int:
        return self.rows - self.nulls

    def update(self, array: pa.Array) -> None:
        array = _normalize(array, self.kind)
        self.rows += len(array)  # validate() sets the final count too, for a dataset with no batch
        nulls = pc.sum(pc.is_null(array, nan_is_null=True)).as_py() if self.kind == "float" else array.null_count
        self.nulls += nulls or 0
        if self.kind == "float" and pa.types.is_floating(array.type):
            self.non_finite += pc.sum(pc.is_inf(array)).as_py() or 0
        if self.kind in RANGE_TYPES:
            self._update_range(array)
        if self.counts is not None:
            self._update_counts(array)
        if self.rules is not None:
            self._check(array)

    def _update_range(self, array: pa.Array) -> None:
        low_high = pc.min_max(array)
        low, high = low_high["min"].as_py(), low_high["max"].as_py()
        if low is not None:
            self.min = low if self.min is None else min(self.min, low)
            self.max = high if self.max is None else max(self.max, high)

    def _update_counts(self, array: pa.Array) -> None:
        counted = pc.value_counts(array.drop_null())
        if len(counted) > self.max_categories:
            self.counts = None
            return
        for value, count in zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist()):
            self.counts[value] = self.counts.get(value, 0) + count
        if len(self.counts) > self.max_categories:
            self.counts = None

    def _check(self, array: pa.Array) -> None:
        rules = self.rules
        if rules.categories is not None:
            present = array.drop_null()
            unseen = pc.invert(pc.is_in(present, value_set=rules.categories))
            count = pc.sum(unseen).as_py() or 0
            self.unseen += count
            if count and len(self.unseen_values) < EXAMPLES:
                self.unseen_values.update(pc.unique(present.filter(unseen)).slice(0, EXAMPLES).to_pylist())
        elif rules.low is not None and rules.high is not None:
            outside = pc.or_(pc.less(array, rules.low), pc.greater(array, rules.high))
            self.out_of_range += pc.sum(outside).as_py() or 0

    @property
    def distinct(self) -> int | None:
        return len(self.counts) if self.counts is not None else None

    @property
    def constant(self) -> bool | None:
        if self.values == 0:
            return False
        if self.counts is not None:
            return len(self.counts) == 1
        if self.kind in RANGE_TYPES:
            return self.min == self.max
        return False if self.kind in CATEGORY_TYPES else None  # too many categories to be constant

    def to_schema(self) -> dict:
        categories = None if self.counts is None else [[_to_json(v), c] for v, c in sorted(self.counts.items())]
        return {
            "type": self.kind,
            "arrow_type": str(self.arrow_type),
            "nulls": self.nulls,
            "non_finite": self.non_finite,
            "null_fraction": round(self.nulls / self.rows, 6) if self.rows else None,
            "min": _to_json(self.min),
            "max": _to_json(self.max),
            "distinct": self.distinct,
            "categories": categories,
            "constant": self.constant,
        }


# ---- reading the reference -------------------------------------------------------------------------------------


def load_schema(path: str) -> dict:
    """Reads a schema written by `write_schema`, with an error that names the file when it is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            schema = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"reference schema not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"reference schema {path} is not valid JSON: {err}") from None
    if not isinstance(schema, dict) or schema.get("format") != FORMAT or not isinstance(schema.get("columns"), dict):
        found = schema.get("format") if isinstance(schema, dict) else type(schema).__name__
        raise ValueError(
            f"{path} is not a kfp-ct schema: expected format '{FORMAT}' with a 'columns' object, found format {found!r}"
        )
    return schema


_SCALAR = r'"(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]*|true|false|null'
# A two-item list ([value, count] pairs, two classes) goes on one line; the newlines it requires occur only
# between JSON tokens, never inside an encoded string, so no value can be altered.
_PAIR = re.compile(rf"\[\n\s*({_SCALAR}),\n\s*({_SCALAR})\n\s*\]")


def write_schema(schema: dict, path: str) -> None:
    """Writes a schema as sorted, indented JSON, atomically."""
    text = _PAIR.sub(r"[\1, \2]", json.dumps(schema, indent=2, sort_keys=True, allow_nan=False))
    with datasets.atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text + "\n")


def _rules(reference: dict | None, name: str, arrow_type: pa.DataType) -> _Rules | None:
    """The checks on a column, when it is in the reference with a type its values can be compared with."""
    expected = (reference or {}).get("columns", {}).get(name)
    kind = column_type(arrow_type)
    if expected is None or not comparable(expected.get("type"), kind):
        return None
    if expected.get("categories") is not None and kind in CATEGORY_TYPES:
        values = [v for v, _ in expected["categories"]]
        try:
            return _Rules(categories=pa.array(values).cast(_normalize_type(arrow_type, kind)))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return None
    if expected.get("min") is not None and expected.get("max") is not None and kind in RANGE_TYPES:
        try:
            return _Rules(low=_bound(expected["min"], kind, arrow_type), high=_bound(expected["max"], kind, arrow_type))
        except (ValueError, TypeError, pa.ArrowInvalid):
            return None
    return None


def _normalize_type(arrow_type: pa.DataType, kind: str) -> pa.DataType:
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    return pa.string() if kind == "string" and not pa.types.is_large_string(arrow_type) else arrow_type


# ---- the pass and the findings ---------------------------------------------------------------------------------


def _target_schema(stats: _ColumnStats | None, target_column: str) -> dict:
    if stats is None:
        return {"column": target_column, "type": None, "task": None, "classes": None}
    distinct = None if stats.counts is None else len(stats.counts)
    task = infer_task(stats.kind, distinct, stats.rows - stats.nulls, pa.types.is_dictionary(stats.arrow_type))
    classes = None
    if task == CLASSIFICATION and stats.counts is not None:
        classes = [_to_json(v) for v in sorted(stats.counts)]
    return {"column": target_column, "type": stats.kind, "task": task, "classes": classes}


def _check_args(tolerances: dict, max_categories: int, max_classes: int) -> None:
    for name, value in tolerances.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a share between 0 and 1, found {value}")
    for name, value in (("max_categories", max_categories), ("max_classes", max_classes)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, found {value}")


def validate(
    *,
    dataset_path: str,
    target_column: str,
    reference_schema_path: str | None = None,
    null_tolerance: float = 0.05,
    out_of_range_tolerance: float = 0.05,
    unseen_category_tolerance: float = 0.05,
    target_null_tolerance: float = 0.0,
    max_categories: int = 100,
    max_classes: int = MAX_CLASSES,
    block_new_nulls: bool = False,
    strict: bool = False,
) -> ValidateResult:
    """Infers the schema of the Parquet dataset `dataset_path` and lists every anomaly, in one streaming pass.

    Without a reference, only what needs none is checked (all-null columns, the target, constant columns, an empty
    dataset); with `reference_schema_path` the dataset is also checked against that schema under the tolerances
    (shares between 0 and 1, see the module docstring). The result's schema is always the dataset's own, so it can
    become the next reference. A classification target with more than `max_classes` classes is a warning (its
    classes are counted up to max(max_categories, max_classes) + 1); `block_new_nulls` makes nulls in a column that
    had none in the reference blocking. Nothing is raised for anomalies: call `raise_for_blocking()`.
    """
    tolerances = {
        "null_tolerance": null_tolerance,
        "out_of_range_tolerance": out_of_range_tolerance,
        "unseen_category_tolerance": unseen_category_tolerance,
        "target_null_tolerance": target_null_tolerance,
    }
    _check_args(tolerances, max_categories, max_classes)
    max_categories, max_classes = int(max_categories), int(max_classes)  # KFP may hand integers over as floats
    reference = load_schema(reference_schema_path) if reference_schema_path else None
    file_schema = datasets.open_dataset(dataset_path).schema_arrow
    captured = capture.input_columns(file_schema.names)  # None unless captured traffic: then its input columns
    if captured is not None:
        file_schema = pa.schema([file_schema.field(name) for name in captured])
    stats = [
        _ColumnStats(
            f.name,
            f.type,
            max(max_categories, max_classes + 1, MAX_INTEGER_CLASSES + 1)
            if f.name == target_column
            else max_categories,
            _rules(reference, f.name, f.type),
        )
        for f in file_schema
    ]
    rows = 0
    for batch in datasets.iter_batches(dataset_path, captured):
        rows += batch.num_rows
        for column, array in zip(stats, batch.columns):
            column.update(array)
    for column in stats:
        column.rows = rows  # also right for a dataset with no batch at all
    by_name = {s.name: s for s in stats}
    schema = {
        "format": FORMAT,
        "rows": rows,
        "column_order": [s.name for s in stats],
        "max_categories": max_categories,
        "target": _target_schema(by_name.get(target_column), target_column),
        "columns": {s.name: s.to_schema() for s in stats},
    }
    findings = _Findings(strict)
    _dataset_findings(findings, schema, by_name, target_column, tolerances, reference, max_classes, captured is None)
    if reference is not None:
        _reference_findings(
            findings, schema, by_name, reference, {**tolerances, "block_new_nulls": block_new_nulls}, captured is None
        )
    return ValidateResult(str(dataset_path), schema, findings.anomalies, reference_schema_path)


def infer_schema(dataset_path: str, target_column: str, max_categories: int = 100) -> dict:
    """The schema of the Parquet dataset `dataset_path` (see the module docstring), in one streaming pass."""
    return validate(dataset_path=dataset_path, target_column=target_column, max_categories=max_categories).schema


class _Findings:
    def __init__(self, strict: bool):
        self.strict, self.anomalies = strict, []

    def add(self, column: str | None, kind: str, expected: str, found: str, blocking: bool) -> None:
        self.anomalies.append(Anomaly(column, kind, expected, found, blocking or self.strict))


def _dataset_findings(
    findings: _Findings,
    schema: dict,
    by_name: dict,
    target_column: str,
    tolerances: dict,
    reference: dict | None,
    max_classes: int,
    needs_target: bool = True,
) -> None:
    """Anomalies that need no reference: an empty dataset, all-null columns, inf and -inf, the target (and its
    number of classes; its absence only when `needs_target`), constant columns (unless the reference's column was
    constant too)."""
    was_constant = {name for name, c in (reference or {}).get("columns", {}).items() if c.get("constant")}
    rows = schema["rows"]
    if rows == 0:
        findings.add(None, "empty_dataset", "at least one row", "0 rows", True)
    target = by_name.get(target_column)
    if target is None and needs_target:
        findings.add(
            target_column,
            "target_missing",
            "the target column in the dataset",
            f"only the columns {', '.join(by_name) or '(none)'}",
            True,
        )
    if rows == 0:
        return
    for stats in by_name.values():
        if stats.non_finite:
            findings.add(
                stats.name,
                "non_finite",
                "finite numbers (or nulls)",
                f"{_share(stats.non_finite, rows)} inf or -inf",
                True,
            )
        if stats.values == 0 and stats.name != target_column:
            findings.add(
                stats.name,
                "all_null",
                "at least one value (to infer the column's type)",
                f"all {rows} values null",
                True,
            )
        elif stats.constant and stats.name != target_column and stats.name not in was_constant:
            findings.add(
                stats.name,
                "constant_column",
                "more than one distinct value",
                f"the single value {_constant_value(stats)!r}",
                False,
            )
    if target is not None:
        _target_findings(findings, target, schema["target"], tolerances["target_null_tolerance"])
        _class_count_findings(findings, target, schema["target"], max_classes)


def _class_count_findings(findings: _Findings, target: _ColumnStats, target_schema: dict, max_classes: int) -> None:
    if target_schema["task"] != "classification":
        return
    n = len(target.counts) if target.counts is not None else None
    if n is None or n > max_classes:
        findings.add(
            target.name,
            "many_classes",
            f"at most {max_classes} classes (max_classes; the trainers refuse more than their max_classes)",
            f"{n} classes" if n is not None else f"more than {target.max_categories} classes",
            False,
        )


def _constant_value(stats: _ColumnStats) -> Any:
    return _to_json(next(iter(stats.counts)) if stats.counts else stats.min)


def _target_findings(findings: _Findings, target: _ColumnStats, target_schema: dict, null_tolerance: float) -> None:
    name = target.name
    if target.nulls / target.rows > null_tolerance + _EPSILON:
        findings.add(
            name,
            "target_null",
            f"a value in every row (null share <= {null_tolerance:g})",
            f"{_share(target.nulls, target.rows)} null",
            True,
        )
    if target.values and target_schema["task"] is None:
        findings.add(
            name, "target_type", "a numeric, string or bool target", f"type {target.kind} ({target.arrow_type})", True
        )
    elif target.constant:
        findings.add(
            name, "target_one_class", "at least two distinct target values", f"only {_constant_value(target)!r}", True
        )


def _reference_findings(
    findings: _Findings, schema: dict, by_name: dict, reference: dict, tolerances: dict, all_columns: bool = True
) -> None:
    """Anomalies against the reference: columns (a reference column missing only when `all_columns`), types,
    nulls, ranges, categories, constants, the target."""
    target_column = schema["target"]["column"]
    expected_columns = reference["columns"]
    ref_target = (reference.get("target") or {}).get("column")
    if ref_target is not None and ref_target != target_column:
        findings.add(
            target_column, "target_changed", f"the reference's target '{ref_target}'", f"target '{target_column}'", True
        )
    listed = [c for c in reference.get("column_order", []) if c in expected_columns]
    order = listed + sorted(set(expected_columns) - set(listed))
    for name in order:
        expected = expected_columns[name]
        if name not in by_name and name != target_column and all_columns:
            findings.add(name, "missing_column", f"a column of type {expected.get('type')}", "no such column", True)
    for name, stats in by_name.items():
        expected = expected_columns.get(name)
        if expected is None:
            findings.add(
                name,
                "extra_column",
                f"only the reference's columns ({', '.join(order)})",
                f"an extra column of type {stats.kind}",
                True,
            )
        else:
            _column_findings(findings, stats, expected, tolerances, name == target_column, reference)


def _column_findings(
    findings: _Findings, stats: _ColumnStats, expected: dict, tolerances: dict, is_target: bool, reference: dict
) -> None:
    name, was = stats.name, expected.get("type")
    if stats.values == 0:
        return  # all null: reported already (or the dataset is empty)
    if was != stats.kind and was not in (None, "null"):
        if {was, stats.kind} == {"int", "float"}:
            findings.add(name, "numeric_type_changed", f"type {was}", f"type {stats.kind} ({stats.arrow_type})", False)
        else:
            findings.add(
                name,
                "type_changed",
                f"type {was} ({expected.get('arrow_type')})",
                f"type {stats.kind} ({stats.arrow_type})",
                True,
            )
            return
    ref_nulls = expected.get("null_fraction") or 0.0
    nulls = stats.nulls / stats.rows
    if not is_target and nulls > ref_nulls + tolerances["null_tolerance"] + _EPSILON:
        findings.add(
            name,
            "null_fraction",
            f"null share <= {ref_nulls:g} + {tolerances['null_tolerance']:g} (the reference's + tolerance)",
            f"{_share(stats.nulls, stats.rows)} null",
            True,
        )
    elif not is_target and stats.nulls and expected.get("nulls") == 0:
        findings.add(
            name,
            "new_nulls",
            "no nulls (the reference had none)",
            f"{_share(stats.nulls, stats.rows)} null",
            tolerances["block_new_nulls"],
        )
    if expected.get("constant") and not stats.constant:  # says more than "out of range" or "unseen" would
        findings.add(
            name,
            "constant_varied",
            f"the reference's single value {_reference_value(expected)!r}",
            _spread(stats),
            False,
        )
    elif stats.rules is not None:
        _value_findings(findings, stats, expected, tolerances, is_target, reference)


def _reference_value(expected: dict) -> Any:
    return expected["categories"][0][0] if expected.get("categories") else expected.get("min")


def _spread(stats: _ColumnStats) -> str:
    if stats.counts is not None:
        return f"{len(stats.counts)} distinct values"
    if stats.kind in RANGE_TYPES:
        return f"values from {_to_json(stats.min)!r} to {_to_json(stats.max)!r}"
    return "more than one value"


def _value_findings(
    findings: _Findings, stats: _ColumnStats, expected: dict, tolerances: dict, is_target: bool, reference: dict
) -> None:
    name, values = stats.name, stats.values
    if stats.rules.categories is not None:
        known = [v for v, _ in expected["categories"]]
        if is_target and (reference.get("target") or {}).get("task") == "classification":
            _class_findings(findings, stats, known)
        elif stats.unseen / values > tolerances["unseen_category_tolerance"] + _EPSILON:
            findings.add(
                name,
                "unseen_categories",
                f"values among the reference's {len(known)} categories (unseen share <= "
                f"{tolerances['unseen_category_tolerance']:g})",
                f"{_share(stats.unseen, values)} unseen, e.g. {_examples(sorted(stats.unseen_values))}",
                False,
            )
    elif stats.out_of_range / values > tolerances["out_of_range_tolerance"] + _EPSILON:
        findings.add(
            name,
            "out_of_range",
            f"values in [{expected['min']!r}, {expected['max']!r}] (share outside <= "
            f"{tolerances['out_of_range_tolerance']:g})",
            f"{_share(stats.out_of_range, values)} outside, range [{_to_json(stats.min)!r}, {_to_json(stats.max)!r}]",
            False,
        )


def _class_findings(findings: _Findings, stats: _ColumnStats, known: list) -> None:
    if stats.unseen:
        findings.add(
            stats.name,
            "new_target_class",
            f"the reference's classes {known!r}",
            f"{_share(stats.unseen, stats.values)} in new classes, e.g. {_examples(sorted(stats.unseen_values))}",
            False,
        )
    if stats.counts is not None and len(stats.counts) > 1:
        absent = [v for v in known if v not in {_to_json(c) for c in stats.counts}]
        if absent:
            findings.add(
                stats.name,
                "target_class_missing",
                f"the reference's classes {known!r}",
                f"no rows of {absent!r}",
                False,
            )


# ---- the report ------------------------------------------------------------------------------------------------

_STYLE = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}th,td{border:1px solid #ccc;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f0f0f0}.blocking{background:#fde2e1}.warning{background:#fff4d6}
.ok{color:#1a7f37}.fail{color:#c62828}code{font-size:12px}"""


def render_report(result: ValidateResult) -> str:
    """A self-contained HTML page (no external assets): the verdict, the anomalies and the schema."""
    schema, e = result.schema, html.escape
    verdict = (
        f"<p class='fail'><b>FAILED</b>: {len(result.blocking)} blocking anomalies</p>"
        if result.blocking
        else "<p class='ok'><b>PASSED</b>: no blocking anomaly</p>"
    )
    against = f" against <code>{e(result.reference_path)}</code>" if result.reference_path else " (no reference)"
    anomaly_rows = "".join(
        f"<tr class='{'blocking' if a.blocking else 'warning'}'><td>{'blocking' if a.blocking else 'warning'}</td>"
        f"<td>{e(a.column if a.column is not None else '(dataset)')}</td><td>{e(a.kind)}</td>"
        f"<td>{e(a.expected)}</td><td>{e(a.found)}</td></tr>"
        for a in result.anomalies
    )
    anomalies = (
        f"<table><tr><th>severity</th><th>column</th><th>kind</th><th>expected</th><th>found</th></tr>"
        f"{anomaly_rows}</table>"
        if result.anomalies
        else "<p>None.</p>"
    )
    target = schema["target"]
    column_rows = "".join(
        _schema_row(name, schema["columns"][name], name == target["column"], schema["max_categories"])
        for name in schema["column_order"]
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Validation report</title>"
        f"<style>{_STYLE}</style></head><body><h2>Validation of <code>{e(result.dataset_path)}</code>{against}</h2>"
        f"{verdict}<p>{schema['rows']} rows, {len(schema['columns'])} columns; target <code>{e(target['column'])}"
        f"</code>: {e(str(target['task']))}{_classes(target)}.</p>"
        f"<h3>Anomalies ({len(result.anomalies)})</h3>{anomalies}<h3>Schema</h3><table><tr><th>column</th>"
        f"<th>type</th><th>null share</th><th>min</th><th>max</th><th>distinct</th><th>constant</th>"
        f"<th>top categories (count)</th></tr>{column_rows}</table></body></html>\n"
    )


def _classes(target: dict) -> str:
    return f", classes {html.escape(', '.join(map(str, target['classes'])))}" if target.get("classes") else ""


def _schema_row(name: str, column: dict, is_target: bool, max_categories: int) -> str:
    e = html.escape
    top = sorted(column["categories"] or [], key=lambda pair: -pair[1])[:10]
    categories = ", ".join(f"{v} ({c})" for v, c in top) + (" ..." if len(column["categories"] or []) > 10 else "")
    cells = [
        f"{name}{' (target)' if is_target else ''}",
        f"{column['type']} ({column['arrow_type']})",
        "" if column["null_fraction"] is None else f"{column['null_fraction']:.4g}",
        column["min"],
        column["max"],
        _distinct(column, max_categories),
        column["constant"],
        categories,
    ]
    return "<tr>" + "".join(f"<td>{e('' if c is None else str(c))}</td>" for c in cells) + "</tr>"


def _distinct(column: dict, max_categories: int) -> str:
    if column["distinct"] is not None:
        return str(column["distinct"])
    return f"> {max_categories}" if column["type"] in CATEGORY_TYPES else ""  # floats and times are not counted


def write_report(result: ValidateResult, path: str) -> None:
    """Writes the HTML report atomically."""
    with datasets.atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(render_report(result))
