"""validate as a component: its Python function with real artifacts, bad inputs, and a run under kfp.local."""

# no `from __future__ import annotations`: kfp reads the pipeline's annotations as types, not strings
import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from kfp import dsl

from kfp_ct.components.ingest.core import ingest
from kfp_ct.components.validate import validate


@pytest.fixture(scope="module")
def elec2_slices(shared_data, tmp_path_factory):
    """Two real slices of elec2: its first 20 days and the next 20 (Parquet dataset files)."""
    root = tmp_path_factory.mktemp("elec2")
    source = str(shared_data / "elec2" / "elec2_enriched.csv.gz")
    ingest(source_uri=source, output_path=str(root / "first.parquet"), time_column="day_index", start="0", end="20")
    ingest(source_uri=source, output_path=str(root / "next.parquet"), time_column="day_index", start="20", end="40")
    return root / "first.parquet", root / "next.parquet"


def outputs(directory):
    """The output artifacts of one validate call, as KFP's executor builds them (a URI each)."""
    return {
        "schema": dsl.Artifact(name="schema", uri=str(directory / "schema")),
        "report": dsl.HTML(name="report", uri=str(directory / "report")),
        "metrics": dsl.Metrics(name="metrics", uri=str(directory / "metrics")),
    }


def run(dataset_path, directory, reference=None, **params):
    out = outputs(directory)
    reference_schema = dsl.Artifact(name="schema", uri=str(reference)) if reference else None
    validate.python_func(
        dataset=dsl.Dataset(name="dataset", uri=str(dataset_path)),
        target_column="class",
        reference_schema=reference_schema,
        **out,
        **params,
    )
    return out


def test_infers_then_checks_against_the_reference(elec2_slices, tmp_path):
    first, following = elec2_slices
    inferred = run(first, tmp_path / "first")
    schema = json.loads((tmp_path / "first" / "schema").read_text())
    assert schema["rows"] == 20 * 48 and schema["target"]["classes"] == ["DOWN", "UP"]
    assert inferred["schema"].metadata == {"rows": 960, "columns": 11, "target": "class", "task": "classification"}
    # vicprice, vicdemand and transfer are constant over the first 363 days (SOURCE.md)
    assert inferred["metrics"].metadata == {"rows": 960, "columns": 11, "anomalies": 3, "blocking": 0, "warnings": 3}
    assert "constant_column" in (tmp_path / "first" / "report").read_text()

    checked = run(following, tmp_path / "next", reference=tmp_path / "first" / "schema")
    assert json.loads((tmp_path / "next" / "schema").read_text())["rows"] == 960  # its own schema: the next reference
    metrics = checked["metrics"].metadata
    assert metrics["blocking"] == 0 and metrics["anomalies"] >= 3  # day_index, approx_date, date move on
    page = (tmp_path / "next" / "report").read_text()
    assert "PASSED" in page and "day_index" in page and "out_of_range" in page


def test_tolerances_are_parameters(elec2_slices, tmp_path):
    first, following = elec2_slices
    run(first, tmp_path / "first")
    # the next 20 days: new day_index values (an int column with few values is checked by category) and dates
    expected = (
        r"found 3 blocking anomalies:\n- column 'day_index': unseen_categories: .* \(unseen share <= 0.05\), "
        r"found 960 of 960 \(100.00%\) unseen, e.g. 20, 21, 22, 23, 24\n"
        r"- column 'approx_date': out_of_range: expected values in \['1996-05-07', '1996-05-26'\] \(share "
        r"outside <= 0.5\), found 960 of 960 \(100.00%\) outside, range \['1996-05-27', '1996-06-15'\]\n"
        r"- column 'date': out_of_range: .*$"
    )
    with pytest.raises(ValueError, match=expected):
        run(
            following,
            tmp_path / "strict",
            reference=tmp_path / "first" / "schema",
            strict=True,
            out_of_range_tolerance=0.5,
        )
    lenient = run(
        following,
        tmp_path / "lenient",
        reference=tmp_path / "first" / "schema",
        out_of_range_tolerance=1.0,
        unseen_category_tolerance=1.0,
    )
    assert lenient["metrics"].metadata["anomalies"] == 0


def _retype(table: pa.Table) -> pa.Table:
    return table.set_column(
        table.schema.get_field_index("nswprice"), "nswprice", pc.cast(table["nswprice"], pa.string())
    )


def _all_null(table: pa.Table) -> pa.Table:
    return table.set_column(
        table.schema.get_field_index("nswdemand"), "nswdemand", pa.nulls(table.num_rows, pa.float64())
    )


BAD = {
    "type_changed": (
        _retype,
        True,
        r"column 'nswprice': type_changed: expected type float \(double\), "
        r"found type string \(string\)",
    ),
    "all_null": (
        _all_null,
        False,
        r"column 'nswdemand': all_null: expected at least one value .* found all 960 "
        r"values null",
    ),
    "missing_target": (
        lambda t: t.drop_columns(["class"]),
        False,
        r"column 'class': target_missing: expected the target column in the dataset, found only the "
        r"columns day_index, approx_date, date, day, period, nswprice, nswdemand, vicprice, vicdemand, "
        r"transfer",
    ),
    "one_class": (
        lambda t: t.filter(pc.equal(t["class"], "UP")),
        False,
        r"column 'class': target_one_class: expected at least two distinct target values, found only 'UP'",
    ),
    "empty": (lambda t: t.slice(0, 0), False, r"dataset: empty_dataset: expected at least one row, found 0 rows"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_fails_with_one_error_naming_the_column(elec2_slices, tmp_path, case):
    first, following = elec2_slices
    change, needs_reference, message = BAD[case]
    bad = tmp_path / "bad.parquet"
    pq.write_table(change(pq.read_table(following)), bad)
    reference = None
    if needs_reference:
        run(first, tmp_path / "first")
        reference = tmp_path / "first" / "schema"
    with pytest.raises(ValueError, match=message) as raised:
        run(bad, tmp_path / "out", reference=reference)
    assert str(bad) in str(raised.value)
    # a failed validation writes its report (to show why) and no schema (it must not become a reference)
    assert "FAILED" in (tmp_path / "out" / "report").read_text()
    assert not (tmp_path / "out" / "schema").exists()


def test_a_reference_that_is_not_a_schema_is_named(elec2_slices, tmp_path):
    first, _ = elec2_slices
    with pytest.raises(ValueError, match=r"first.parquet is not valid JSON"):
        run(first, tmp_path / "out", reference=first)


@pytest.mark.local
def test_runs_under_kfp_local_with_and_without_a_reference(kfp_local, shared_data):
    from typing import NamedTuple

    from kfp_ct.components.ingest import ingest as ingest_component

    class Outputs(NamedTuple):
        reference_metrics: dsl.Metrics
        metrics: dsl.Metrics
        schema: dsl.Artifact
        report: dsl.HTML

    @dsl.pipeline
    def two_windows(source: str, target: str) -> Outputs:
        first = ingest_component(source_uri=source, time_column="day_index", start="0", end="20")
        reference = validate(dataset=first.outputs["dataset"], target_column=target)
        second = ingest_component(source_uri=source, time_column="day_index", start="20", end="40")
        checked = validate(
            dataset=second.outputs["dataset"], target_column=target, reference_schema=reference.outputs["schema"]
        )
        return Outputs(
            reference_metrics=reference.outputs["metrics"],
            metrics=checked.outputs["metrics"],
            schema=checked.outputs["schema"],
            report=checked.outputs["report"],
        )

    source = str(shared_data / "elec2" / "elec2_enriched.csv.gz")
    run = two_windows(source=source, target="class")
    assert run.outputs["reference_metrics"].metadata["warnings"] == 3
    assert run.outputs["metrics"].metadata["blocking"] == 0
    with open(run.outputs["schema"].path) as f:
        schema = json.load(f)
    assert schema["rows"] == 960 and schema["max_categories"] == 100 and isinstance(schema["max_categories"], int)
    with open(run.outputs["report"].path) as f:
        assert f.read().startswith("<!DOCTYPE html>")
    with pytest.raises(RuntimeError, match="FAILURE"):
        two_windows(source=source, target="no_such_column")
