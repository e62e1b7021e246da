"""validate core: schema inference, every anomaly kind, tolerance boundaries, streaming, the schema file, the report."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kfp_ct.components._common import datasets, schema
from kfp_ct.components.validate import core


def write(tmp_path, columns: dict, name: str = "data.parquet", schema: pa.Schema | None = None) -> str:
    path = tmp_path / name
    pq.write_table(pa.table(columns, schema=schema), path)
    return str(path)


def reference(tmp_path, columns: dict, target: str = "y", **kwargs) -> str:
    """The schema of `columns`, written as a reference file."""
    path = str(tmp_path / "reference.json")
    core.write_schema(core.infer_schema(write(tmp_path, columns, "reference.parquet"), target, **kwargs), path)
    return path


def kinds(result: core.ValidateResult) -> dict:
    """{(column, kind): blocking} of every anomaly."""
    return {(a.column, a.kind): a.blocking for a in result.anomalies}


BASE = {
    "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
    "n": list(range(10)),
    "s": ["a", "b", "a", "b", "a", "b", "a", "b", "a", "c"],
    "y": ["UP", "DOWN"] * 5,
}


# ---- inference ---------------------------------------------------------------------------------------------------


def test_infers_types_nulls_ranges_categories_and_the_target(tmp_path):
    path = write(
        tmp_path,
        {
            "f": [1.5, None, float("nan"), -2.0],
            "i": [3, 1, 3, None],
            "s": ["b", "a", "b", "b"],
            "b": [True, False, True, True],
            "t": pa.array(
                [datetime(2024, 1, 2, 3, 4, 5), datetime(2023, 5, 6), None, datetime(2024, 1, 1)], pa.timestamp("ns")
            ),
            "d": pa.array([date(2020, 1, 1), date(2021, 1, 1), date(2020, 6, 1), None]),
            "k": ["same"] * 4,
            "y": ["UP", "DOWN", "UP", "UP"],
        },
    )
    result = core.validate(dataset_path=path, target_column="y")
    schema = result.schema
    assert schema["format"] == core.FORMAT and schema["rows"] == 4
    assert schema["column_order"] == ["f", "i", "s", "b", "t", "d", "k", "y"]
    columns = schema["columns"]
    assert {name: c["type"] for name, c in columns.items()} == {
        "f": "float",
        "i": "int",
        "s": "string",
        "b": "bool",
        "t": "datetime",
        "d": "date",
        "k": "string",
        "y": "string",
    }
    assert columns["f"] | {} == {
        "type": "float",
        "arrow_type": "double",
        "nulls": 2,
        "non_finite": 0,
        "null_fraction": 0.5,
        "min": -2.0,
        "max": 1.5,
        "distinct": None,
        "categories": None,
        "constant": False,
    }
    assert columns["i"]["categories"] == [[1, 1], [3, 2]] and columns["i"]["distinct"] == 2
    assert (columns["i"]["min"], columns["i"]["max"], columns["i"]["null_fraction"]) == (1, 3, 0.25)
    assert columns["s"]["categories"] == [["a", 1], ["b", 3]] and columns["s"]["min"] is None
    assert columns["b"]["categories"] == [[False, 1], [True, 3]]
    assert (columns["t"]["min"], columns["t"]["max"]) == ("2023-05-06T00:00:00", "2024-01-02T03:04:05")
    assert (columns["d"]["min"], columns["d"]["max"]) == ("2020-01-01", "2021-01-01")
    assert columns["k"]["constant"] is True and columns["s"]["constant"] is False
    assert schema["target"] == {"column": "y", "type": "string", "task": "classification", "classes": ["DOWN", "UP"]}
    assert kinds(result) == {("k", "constant_column"): False}


@pytest.mark.parametrize(
    ("values", "task", "classes"),
    [
        ([0, 1, 1, 0, 2], "classification", [0, 1, 2]),
        (list(range(schema.MAX_INTEGER_CLASSES + 1)), "regression", None),
        ([0.5, 1.5, 2.5, 0.5], "regression", None),
        ([True, False, True], "classification", [False, True]),
    ],
)
def test_infers_the_task_from_the_target(tmp_path, values, task, classes):
    schema = core.infer_schema(write(tmp_path, {"y": values}), "y")
    assert (schema["target"]["task"], schema["target"]["classes"]) == (task, classes)


def test_categories_stop_at_max_categories(tmp_path):
    path = write(tmp_path, {"s": [f"v{i % 6}" for i in range(30)], "i": [i % 6 for i in range(30)], "y": [0, 1] * 15})
    capped = core.infer_schema(path, "y", max_categories=5)["columns"]
    assert capped["s"]["categories"] is None and capped["s"]["distinct"] is None and capped["s"]["constant"] is False
    assert capped["i"]["categories"] is None and (capped["i"]["min"], capped["i"]["max"]) == (0, 5)
    page = core.render_report(core.validate(dataset_path=path, target_column="y", max_categories=5))
    assert "<td>s</td><td>string (string)</td><td>0</td><td></td><td></td><td>&gt; 5</td>" in page
    kept = core.infer_schema(path, "y", max_categories=6)["columns"]
    assert kept["s"]["distinct"] == 6 and kept["s"]["categories"][0] == ["v0", 5]


def test_dictionary_decimal_and_timezone_columns(tmp_path):
    import decimal

    path = write(
        tmp_path,
        {
            "cat": pa.array(["a", "b", "a"]).dictionary_encode(),
            "dec": pa.array([decimal.Decimal("1.50"), decimal.Decimal("2.25"), None], pa.decimal128(5, 2)),
            "utc": pa.array(
                [datetime(2024, 1, 1, tzinfo=UTC)] * 2 + [datetime(2024, 2, 1, tzinfo=UTC)],
                pa.timestamp("us", tz="UTC"),
            ),
            "y": [1, 0, 1],
        },
    )
    columns = core.infer_schema(path, "y")["columns"]
    assert columns["cat"]["type"] == "string" and columns["cat"]["categories"] == [["a", 2], ["b", 1]]
    assert columns["dec"]["type"] == "float" and (columns["dec"]["min"], columns["dec"]["max"]) == (1.5, 2.25)
    assert columns["utc"]["max"] == "2024-02-01T00:00:00+00:00"
    later = write(
        tmp_path,
        {
            "cat": ["a", "z", "z"],
            "dec": [1.0, 2.0, 9.0],
            "utc": pa.array([datetime(2025, 1, 1, tzinfo=UTC)] * 3, pa.timestamp("ns", tz="UTC")),
            "y": [1, 0, 1],
        },
        "later.parquet",
    )
    ref = str(tmp_path / "ref.json")
    core.write_schema(core.infer_schema(path, "y"), ref)
    assert kinds(core.validate(dataset_path=later, target_column="y", reference_schema_path=ref)) == {
        ("cat", "unseen_categories"): False,
        ("dec", "out_of_range"): False,
        ("utc", "out_of_range"): False,
        ("utc", "constant_column"): False,
    }


def test_infinite_values_block_naming_the_column_and_are_written_as_text(tmp_path):
    data = write(
        tmp_path, {"x": [1.0, float("inf"), -float("inf"), None], "z": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]}
    )
    result = core.validate(dataset_path=data, target_column="y")
    assert kinds(result) == {("x", "non_finite"): True}
    with pytest.raises(ValueError, match=r"column 'x': non_finite: expected finite numbers \(or nulls\), found 2 of 4"):
        result.raise_for_blocking()
    assert result.schema["columns"]["x"]["non_finite"] == 2 and result.schema["columns"]["x"]["nulls"] == 1
    ref = str(tmp_path / "reference.json")
    core.write_schema(result.schema, ref)
    text = open(ref).read()
    assert '"max": "inf"' in text and '"min": "-inf"' in text
    json.loads(text)  # strict JSON: no bare Infinity
    later = write(tmp_path, {"x": [5.0, 6.0, 7.0, 8.0], "z": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]}, "later.parquet")
    assert not core.validate(dataset_path=later, target_column="y", reference_schema_path=ref).anomalies
    target = write(tmp_path, {"x": [1.0, 2.0, 3.0], "y": [0.5, float("inf"), 1.5]}, "target.parquet")
    assert kinds(core.validate(dataset_path=target, target_column="y")) == {("y", "non_finite"): True}


# ---- the schema file ---------------------------------------------------------------------------------------------


def test_schema_file_is_sorted_indented_json_that_reads_back(tmp_path):
    path = write(tmp_path, BASE)
    schema = core.infer_schema(path, "y")
    out = tmp_path / "schema.json"
    core.write_schema(schema, str(out))
    text = out.read_text()
    assert core.load_schema(str(out)) == schema and text.endswith("}\n")
    assert '["a", 5]' in text  # a [value, count] pair on one line: one changed count is a one-line diff

    def keys_in_order(pairs):
        keys = [k for k, _ in pairs]
        assert keys == sorted(keys)
        return dict(pairs)

    json.loads(text, object_pairs_hook=keys_in_order)
    assert text.splitlines()[1] == '  "column_order": [' and not list(tmp_path.glob("*.partial"))


def test_load_schema_names_the_bad_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="reference schema not found: .*nope.json"):
        core.load_schema(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad.json is not valid JSON"):
        core.load_schema(str(bad))
    bad.write_text(json.dumps({"format": "tfdv", "columns": {}}))
    with pytest.raises(
        ValueError, match=r"bad.json is not a kfp-ct schema: expected format 'kfp-ct.schema/v1'.*'tfdv'"
    ):
        core.validate(dataset_path=write(tmp_path, BASE), target_column="y", reference_schema_path=str(bad))


def test_tolerances_must_be_shares(tmp_path):
    path = write(tmp_path, BASE)
    with pytest.raises(ValueError, match="out_of_range_tolerance must be a share between 0 and 1, found 1.5"):
        core.validate(dataset_path=path, target_column="y", out_of_range_tolerance=1.5)
    with pytest.raises(ValueError, match="max_categories must be at least 1"):
        core.validate(dataset_path=path, target_column="y", max_categories=0)


def test_a_missing_or_unreadable_dataset_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        core.validate(dataset_path=str(tmp_path / "missing.parquet"), target_column="y")
    bad = tmp_path / "bad.parquet"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="bad.parquet is not a readable Parquet file"):
        core.validate(dataset_path=str(bad), target_column="y")


# ---- blocking without a reference --------------------------------------------------------------------------------


def test_all_null_column_blocks(tmp_path):
    path = write(tmp_path, {**BASE, "empty": pa.array([None] * 10, pa.string()), "void": [None] * 10})
    result = core.validate(dataset_path=path, target_column="y")
    assert kinds(result) == {("empty", "all_null"): True, ("void", "all_null"): True}
    assert result.schema["columns"]["void"]["type"] == "null"
    with pytest.raises(ValueError, match=r"2 blocking anomalies:\n- column 'empty': all_null: .*\n- column 'void'"):
        result.raise_for_blocking()


TARGETS = {
    "one": ["A"] * 10,
    "holes": [1, 0] * 4 + [None, 1],
    "nothing": pa.array([None] * 10, pa.int64()),
    "when": [date(2024, 1, i + 1) for i in range(10)],
}


@pytest.mark.parametrize(
    ("target", "kind", "message"),
    [
        (
            "label",
            "target_missing",
            r"column 'label': target_missing: expected the target column in the dataset, "
            r"found only the columns x, n, s, y",
        ),
        (
            "one",
            "target_one_class",
            r"column 'one': target_one_class: expected at least two distinct target values, "
            r"found only 'A'",
        ),
        ("holes", "target_null", r"column 'holes': target_null: .* found 1 of 10 \(10.00%\) null"),
        ("nothing", "target_null", r"column 'nothing': target_null: .* found 10 of 10 \(100.00%\) null"),
        (
            "when",
            "target_type",
            r"column 'when': target_type: expected a numeric, string or bool target, found type date",
        ),
    ],
)
def test_bad_targets_block(tmp_path, target, kind, message):
    path = write(tmp_path, {**BASE, **({target: TARGETS[target]} if target in TARGETS else {})})
    result = core.validate(dataset_path=path, target_column=target)
    assert [a.kind for a in result.blocking] == [kind]
    with pytest.raises(ValueError, match=message):
        result.raise_for_blocking()


def test_target_null_tolerance(tmp_path):
    path = write(tmp_path, {"x": list(range(10)), "y": [1, 0] * 4 + [None, 1]})
    assert not core.validate(dataset_path=path, target_column="y", target_null_tolerance=0.1).blocking
    assert core.validate(dataset_path=path, target_column="y", target_null_tolerance=0.09).blocking


def test_empty_dataset_blocks(tmp_path):
    schema = pa.schema([("x", pa.float64()), ("y", pa.string())])
    path = write(tmp_path, {"x": [], "y": []}, schema=schema)
    result = core.validate(dataset_path=path, target_column="y")
    assert kinds(result) == {(None, "empty_dataset"): True}
    assert result.schema["rows"] == 0 and result.schema["columns"]["x"]["null_fraction"] is None
    with pytest.raises(ValueError, match="dataset: empty_dataset: expected at least one row, found 0 rows"):
        result.raise_for_blocking()
    ref = reference(tmp_path, BASE)
    assert (None, "empty_dataset") in kinds(
        core.validate(dataset_path=path, target_column="y", reference_schema_path=ref)
    )


# ---- against a reference -----------------------------------------------------------------------------------------


def test_the_same_data_passes_its_own_schema(tmp_path):
    ref = reference(tmp_path, BASE)
    result = core.validate(dataset_path=write(tmp_path, BASE), target_column="y", reference_schema_path=ref)
    assert result.anomalies == [] and not result.blocking
    result.raise_for_blocking()
    assert result.schema == core.load_schema(ref)


def test_columns_and_types_block_and_every_anomaly_is_listed_in_one_error(tmp_path):
    ref = reference(tmp_path, BASE)
    data = write(tmp_path, {"x": [str(v) for v in BASE["x"]], "s": BASE["s"], "extra": [1] * 10, "y": BASE["y"]})
    result = core.validate(dataset_path=data, target_column="y", reference_schema_path=ref)
    assert kinds(result) == {
        ("n", "missing_column"): True,
        ("extra", "extra_column"): True,
        ("x", "type_changed"): True,
        ("extra", "constant_column"): False,
    }
    with pytest.raises(ValueError) as raised:
        result.raise_for_blocking()
    message = str(raised.value)
    assert "found 3 blocking anomalies" in message and "reference.json" in message
    assert "column 'n': missing_column: expected a column of type int, found no such column" in message
    assert "column 'extra': extra_column: expected only the reference's columns (x, n, s, y)" in message
    assert "column 'x': type_changed: expected type float (double), found type string (string)" in message
    assert "constant_column" not in message


def test_int_and_float_are_compared_as_numbers(tmp_path):
    ref = reference(tmp_path, BASE)
    data = write(tmp_path, {**BASE, "x": list(range(1, 11)), "n": [float(v) for v in range(10)]})
    assert kinds(core.validate(dataset_path=data, target_column="y", reference_schema_path=ref)) == {
        ("x", "numeric_type_changed"): False,
        ("n", "numeric_type_changed"): False,
    }


@pytest.mark.parametrize(("nulls", "blocking"), [(2, False), (3, True)])
def test_null_fraction_tolerance_boundary(tmp_path, nulls, blocking):
    ref = reference(tmp_path, {**BASE, "x": BASE["x"][:9] + [None]})  # reference: 10% null
    data = write(tmp_path, {**BASE, "x": [None] * nulls + BASE["x"][nulls:]})
    result = core.validate(
        dataset_path=data, target_column="y", reference_schema_path=ref, null_tolerance=0.1, out_of_range_tolerance=1.0
    )  # up to 20% allowed: 2 of 10 pass, 3 fail
    assert kinds(result) == ({("x", "null_fraction"): True} if blocking else {})
    if blocking:
        assert "null share <= 0.1 + 0.1" in str(result.anomalies[0]) and "3 of 10 (30.00%) null" in str(
            result.anomalies[0]
        )


@pytest.mark.parametrize(("outside", "warned"), [(2, False), (3, True)])
def test_out_of_range_tolerance_boundary(tmp_path, outside, warned):
    ref = reference(tmp_path, BASE)  # x in [1, 10]
    values = [0.5] * (outside - 1) + [10.5] + BASE["x"][outside:]
    result = core.validate(
        dataset_path=write(tmp_path, {**BASE, "x": values}),
        target_column="y",
        reference_schema_path=ref,
        out_of_range_tolerance=0.2,
    )
    assert kinds(result) == ({("x", "out_of_range"): False} if warned else {})
    assert not result.blocking
    if warned:
        assert "values in [1.0, 10.0]" in str(result.anomalies[0])
        assert "3 of 10 (30.00%) outside, range [0.5, 10.5]" in str(result.anomalies[0])


@pytest.mark.parametrize(("unseen", "warned"), [(1, False), (2, True)])
def test_unseen_category_tolerance_boundary(tmp_path, unseen, warned):
    ref = reference(tmp_path, BASE)
    values = ["new"] * unseen + BASE["s"][unseen:]
    result = core.validate(
        dataset_path=write(tmp_path, {**BASE, "s": values}),
        target_column="y",
        reference_schema_path=ref,
        unseen_category_tolerance=0.1,
    )
    assert kinds(result) == ({("s", "unseen_categories"): False} if warned else {})
    if warned:
        assert "2 of 10 (20.00%) unseen, e.g. 'new'" in str(result.anomalies[0])


def test_low_cardinality_int_is_checked_by_category(tmp_path):
    ref = reference(tmp_path, {**BASE, "n": [0, 1, 2, 3, 4] * 2})
    result = core.validate(
        dataset_path=write(tmp_path, {**BASE, "n": [0, 1, 2, 7, 8] * 2}), target_column="y", reference_schema_path=ref
    )
    assert kinds(result) == {("n", "unseen_categories"): False}
    assert "e.g. 7, 8" in str(result.anomalies[0])


def test_nulls_are_neither_unseen_nor_out_of_range(tmp_path):
    ref = reference(tmp_path, BASE)
    data = write(tmp_path, {**BASE, "x": [None] + BASE["x"][1:], "s": [None] + BASE["s"][1:]})
    result = core.validate(
        dataset_path=data,
        target_column="y",
        reference_schema_path=ref,
        null_tolerance=0.1,
        out_of_range_tolerance=0.0,
        unseen_category_tolerance=0.0,
    )
    assert kinds(result) == {("x", "new_nulls"): False, ("s", "new_nulls"): False}  # the reference had no nulls


def test_constant_column_that_varies_warns(tmp_path):
    ref = reference(tmp_path, {**BASE, "k": [0.25] * 10, "c": ["on"] * 10})
    data = write(tmp_path, {**BASE, "k": [0.25] * 8 + [0.5, 0.75], "c": ["on"] * 9 + ["off"]})
    result = core.validate(
        dataset_path=data,
        target_column="y",
        reference_schema_path=ref,
        out_of_range_tolerance=0.5,
        unseen_category_tolerance=0.5,
    )
    assert kinds(result) == {("k", "constant_varied"): False, ("c", "constant_varied"): False}
    assert "expected the reference's single value 0.25, found values from 0.25 to 0.75" in str(result.anomalies[0])
    # a column that is constant in both is no news
    assert (
        core.validate(
            dataset_path=write(tmp_path, {**BASE, "k": [0.25] * 10, "c": ["on"] * 10}, "same.parquet"),
            target_column="y",
            reference_schema_path=ref,
        ).anomalies
        == []
    )


def test_a_column_that_became_constant_warns(tmp_path):
    ref = reference(tmp_path, BASE)
    result = core.validate(
        dataset_path=write(tmp_path, {**BASE, "s": ["a"] * 10}), target_column="y", reference_schema_path=ref
    )
    assert kinds(result) == {("s", "constant_column"): False}


def test_target_classes_against_the_reference(tmp_path):
    ref = reference(tmp_path, {**BASE, "y": ["A", "B", "C", "A", "B"] * 2})
    result = core.validate(
        dataset_path=write(tmp_path, {**BASE, "y": ["A", "B", "D", "A", "B"] * 2}),
        target_column="y",
        reference_schema_path=ref,
    )
    assert kinds(result) == {("y", "new_target_class"): False, ("y", "target_class_missing"): False}
    assert "no rows of ['C']" in str(result.anomalies[1])
    one_class = core.validate(
        dataset_path=write(tmp_path, {**BASE, "y": ["A"] * 10}, "one.parquet"),
        target_column="y",
        reference_schema_path=ref,
    )
    assert kinds(one_class) == {("y", "target_one_class"): True}


def test_another_target_blocks(tmp_path):
    ref = reference(tmp_path, BASE)
    result = core.validate(dataset_path=write(tmp_path, BASE), target_column="s", reference_schema_path=ref)
    assert kinds(result) == {("s", "target_changed"): True}
    assert "expected the reference's target 'y', found target 's'" in str(result.blocking[0])


def test_strict_makes_warnings_block(tmp_path):
    ref = reference(tmp_path, BASE)
    data = write(tmp_path, {**BASE, "x": [v * 10 for v in BASE["x"]]})
    assert kinds(core.validate(dataset_path=data, target_column="y", reference_schema_path=ref)) == {
        ("x", "out_of_range"): False
    }
    assert kinds(core.validate(dataset_path=data, target_column="y", reference_schema_path=ref, strict=True)) == {
        ("x", "out_of_range"): True
    }


def test_the_result_schema_is_the_new_data_s_own(tmp_path):
    ref = reference(tmp_path, BASE)
    data = write(tmp_path, {**BASE, "x": [v * 10 for v in BASE["x"]]})
    result = core.validate(dataset_path=data, target_column="y", reference_schema_path=ref)
    assert result.schema == core.infer_schema(data, "y")
    assert result.schema["columns"]["x"]["max"] == 100.0
    assert result.metrics == {"rows": 10, "columns": 4, "anomalies": 1, "blocking": 0, "warnings": 1}


# ---- streaming ---------------------------------------------------------------------------------------------------


def test_several_batches_give_the_same_schema_and_findings(tmp_path, monkeypatch):
    rows = 5_000
    columns = {
        "x": [float(i % 997) for i in range(rows)],
        "n": [i % 7 for i in range(rows)],
        "s": [f"s{i % 13}" for i in range(rows)],
        "id": [f"id{i}" for i in range(rows)],
        "gap": [None if i % 10 == 0 else i for i in range(rows)],
        "y": ["UP", "DOWN"] * (rows // 2),
    }
    ref = reference(tmp_path, columns, max_categories=20)
    later = {**columns, "x": [float(i % 1200) for i in range(rows)], "s": [f"s{i % 16}" for i in range(rows)]}
    path = write(tmp_path, later, "later.parquet")
    whole = core.validate(dataset_path=path, target_column="y", reference_schema_path=ref, max_categories=20)

    batches = []
    original = datasets.iter_batches

    def counting(*args, **kwargs):
        for batch in original(*args, **kwargs):
            batches.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(datasets, "BATCH_ROWS", 700)
    monkeypatch.setattr(datasets, "iter_batches", counting)
    streamed = core.validate(dataset_path=path, target_column="y", reference_schema_path=ref, max_categories=20)
    assert len(batches) == 8 and max(batches) == 700 and sum(batches) == rows
    assert streamed.schema == whole.schema and streamed.anomalies == whole.anomalies
    assert set(kinds(streamed)) == {("x", "out_of_range"), ("s", "unseen_categories")}
    columns_schema = streamed.schema["columns"]
    assert columns_schema["id"]["categories"] is None and columns_schema["s"]["distinct"] == 16
    assert columns_schema["gap"]["nulls"] == 500 and columns_schema["x"]["max"] == 1199.0


# ---- the report --------------------------------------------------------------------------------------------------


def test_report_is_self_contained_html_with_every_anomaly(tmp_path):
    ref = reference(tmp_path, BASE)
    data = write(
        tmp_path,
        {**BASE, "x": [v * 10 for v in BASE["x"]], "s": ["<b>new</b>", "a"] * 5, "n": [f"t{i}" for i in range(10)]},
    )
    result = core.validate(dataset_path=data, target_column="y", reference_schema_path=ref)
    out = tmp_path / "report.html"
    core.write_report(result, str(out))
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "FAILED" in page
    assert page.count("<tr class='blocking'>") == len(result.blocking) == 1
    assert page.count("<tr class='warning'>") == len(result.warnings) == 2
    assert "&lt;b&gt;new&lt;/b&gt;" in page and "<b>new</b>" not in page
    for name in BASE:
        assert f"<td>{name}" in page
    assert "src=" not in page and "<link" not in page and "http" not in page.lower().replace("http-equiv", "")
    passing = core.validate(
        dataset_path=write(tmp_path, BASE, "same.parquet"), target_column="y", reference_schema_path=ref
    )
    assert "PASSED" in core.render_report(passing) and "<p>None.</p>" in core.render_report(passing)
    assert math.isfinite(result.metrics["anomalies"])


def test_a_column_that_became_all_null_blocks_once(tmp_path):
    ref = reference(tmp_path, BASE)
    result = core.validate(
        dataset_path=write(tmp_path, {**BASE, "x": [None] * 10}), target_column="y", reference_schema_path=ref
    )  # Arrow type null: no type to compare
    assert kinds(result) == {("x", "all_null"): True}
    with pytest.raises(
        ValueError, match=r"found 1 blocking anomaly:\n- column 'x': all_null: .*found all 10 values null$"
    ):
        result.raise_for_blocking()


def test_nulls_in_a_column_that_had_none_warn_or_block(tmp_path):
    ref = reference(tmp_path, BASE)  # no nulls anywhere
    data = write(tmp_path, {**BASE, "x": [None] + BASE["x"][1:]})
    result = core.validate(
        dataset_path=data, target_column="y", reference_schema_path=ref, null_tolerance=0.5
    )  # within the tolerance: not a null_fraction block
    assert kinds(result) == {("x", "new_nulls"): False}
    assert "column 'x': new_nulls: expected no nulls (the reference had none), found 1 of 10 (10.00%) null" in str(
        result.anomalies[0]
    )
    assert kinds(
        core.validate(
            dataset_path=data, target_column="y", reference_schema_path=ref, null_tolerance=0.5, block_new_nulls=True
        )
    ) == {("x", "new_nulls"): True}
    assert kinds(
        core.validate(dataset_path=data, target_column="y", reference_schema_path=ref, null_tolerance=0.05)
    ) == {("x", "null_fraction"): True}  # not both
    with_nulls = reference(tmp_path, {**BASE, "x": BASE["x"][:9] + [None]})  # the reference had nulls already
    assert (
        kinds(
            core.validate(
                dataset_path=data, target_column="y", reference_schema_path=with_nulls, out_of_range_tolerance=1.0
            )
        )
        == {}
    )


def test_a_target_with_more_classes_than_max_classes_warns(tmp_path):
    many = write(tmp_path, {"x": [float(i) for i in range(300)], "y": [f"c{i % 150}" for i in range(300)]})
    result = core.validate(dataset_path=many, target_column="y", max_classes=149)
    assert kinds(result) == {("y", "many_classes"): False}
    assert "at most 149 classes" in str(result.anomalies[0]) and "found 150 classes" in str(result.anomalies[0])
    # the target's classes are counted up to max_classes + 1 (at least max_categories)
    assert "found more than 101 classes" in str(core.validate(dataset_path=many, target_column="y").anomalies[0])
    assert kinds(core.validate(dataset_path=many, target_column="y", max_classes=150)) == {}
    assert kinds(core.validate(dataset_path=many, target_column="y", max_classes=149, strict=True)) == {
        ("y", "many_classes"): True
    }
    with pytest.raises(ValueError, match="max_classes must be at least 1, found 0"):
        core.validate(dataset_path=many, target_column="y", max_classes=0)
