"""Captured traffic validated against the reference schema: the model's input columns are checked (types, ranges,
categories), while its request ids, times and answers are not extra columns, its missing target (labels come later)
is not an anomaly, and neither is a reference column that is no model input."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from kfp_ct.components._common import datasets
from kfp_ct.components.validate import core


def _reference(elec2_split, tmp_path) -> str:
    """The schema of the train split with one more column that no model takes (`note`)."""
    train = datasets.open_dataset(elec2_split["train"]).read()
    path = str(tmp_path / "reference.parquet")
    datasets.write_table(train.append_column("note", pa.array(["x"] * train.num_rows)), path, "reference")
    schema = str(tmp_path / "schema.json")
    core.write_schema(core.infer_schema(path, "class"), schema)
    return schema


def test_captured_traffic_is_checked_on_the_models_input_columns(elec2_capture, elec2_split, tmp_path):
    reference = _reference(elec2_split, tmp_path)
    result = core.validate(dataset_path=elec2_capture["path"], target_column="class", reference_schema_path=reference)
    assert list(result.schema["columns"]) == elec2_capture["inputs"]
    assert [a for a in result.anomalies if a.blocking] == []
    assert not {a.kind for a in result.anomalies} & {"target_missing", "missing_column", "extra_column"}
    # the same rows not as captured traffic: the missing target and the missing column are blocking
    plain = datasets.open_dataset(elec2_capture["path"]).read().select(elec2_capture["inputs"])
    datasets.write_table(plain, tmp_path / "plain.parquet", "plain")
    found = core.validate(
        dataset_path=str(tmp_path / "plain.parquet"), target_column="class", reference_schema_path=reference
    )
    assert {a.kind for a in found.anomalies if a.blocking} == {"target_missing", "missing_column"}


def test_an_input_out_of_the_references_range_is_found_in_captured_traffic(elec2_capture, elec2_split, tmp_path):
    table = datasets.open_dataset(elec2_capture["path"]).read()
    index = table.schema.get_field_index("nswprice")
    table = table.set_column(index, "nswprice", pc.add(table["nswprice"], 100.0))
    path = str(tmp_path / "shifted.parquet")
    datasets.write_table(table, path, "capture")
    result = core.validate(
        dataset_path=path, target_column="class", reference_schema_path=_reference(elec2_split, tmp_path)
    )
    assert [(a.column, a.kind) for a in result.anomalies if a.kind == "out_of_range"] == [("nswprice", "out_of_range")]
