"""One rule for a column's type and a target's task: validate, featurize, monitor_drift and the server agree on every
table of every shared dataset (a sample of its rows, ingested as a user's file would be).

Each component is asked through the code it runs itself: validate's schema, featurize's fitted featurizer and its
task inference, monitor_drift's column selection and its per-column statistics, the server's payload columns built
from the model signature the featurizer gives. A component that decided a column's type or a target's task on its own
again would disagree here on some real column."""

from __future__ import annotations

import pyarrow as pa
import pytest

from kfp_ct.components._common import datasets, schema

SAMPLE_ROWS = 2000
TABLES = [
    ("bike_sharing/hour.csv", "cnt"),
    ("bike_sharing/day.csv", "cnt"),
    ("elec2/elec2.csv", "class"),
    ("elec2/elec2_enriched.csv.gz", "class"),
    ("weather_nebraska/weather.csv", "rain"),
    ("weather_nebraska/weather_original.csv", "target"),
]


@pytest.fixture(scope="module", params=[table for table, _ in TABLES])
def sample(request, shared_data, tmp_path_factory):
    """(path of a Parquet sample of the table, its Arrow schema, the table's target): the table ingested, then
    SAMPLE_ROWS rows drawn at random; each string column also stored dictionary-encoded (pandas' category), and each
    date column also as ISO 8601 text (as pandas writes a CSV it read without parsing dates)."""
    import numpy as np

    from kfp_ct.components.ingest.core import ingest

    root = tmp_path_factory.mktemp("agreement")
    ingest(source_uri=str(shared_data / request.param), output_path=str(root / "full.parquet"))
    table = datasets.open_dataset(root / "full.parquet").read()
    rows = np.random.default_rng(0).choice(table.num_rows, min(SAMPLE_ROWS, table.num_rows), replace=False)
    table = table.take(pa.array(np.sort(rows)))
    strings = [f.name for f in table.schema if pa.types.is_string(f.type)]
    for name in strings:
        table = table.append_column(f"{name}_category", table.column(name).dictionary_encode())
    for name in [f.name for f in table.schema if pa.types.is_date(f.type)]:
        table = table.append_column(f"{name}_text", table.column(name).cast(pa.string()))
    path = root / "sample.parquet"
    datasets.write_table(table, path, request.param)
    return str(path), table.schema, dict(TABLES)[request.param]


def _validate_types(path: str, target: str) -> tuple[dict, dict]:
    from kfp_ct.components.validate import core

    found = core.infer_schema(path, target)
    return {name: column["type"] for name, column in found["columns"].items()}, found["target"]


def test_column_kinds_agree(sample, tmp_path):
    from kfp_ct.components._common.model import signature_for
    from kfp_ct.components.featurize import core as featurize
    from kfp_ct.components.monitor_drift import core as drift
    from kfp_ct.components.monitor_drift.stats import ColumnStats
    from kfp_ct.components.push.server import Columns

    path, arrow_schema, target = sample
    expected = {f.name: schema.column_kind(f.type) for f in arrow_schema}  # by the stored type
    assert set(expected.values()) >= {schema.NUMERIC}
    date_text = {f"{f.name}_text": schema.DATETIME for f in arrow_schema if pa.types.is_date(f.type)}
    assert all(expected[name] == schema.CATEGORICAL for name in date_text)
    for_models = {**expected, **date_text}  # date text is a date/time to a model

    # validate: the schema's type of each column is the type the rule gives its Arrow type
    types, _ = _validate_types(path, target)
    assert types == {f.name: schema.column_type(f.type) for f in arrow_schema}

    # featurize: the featurizer's kind of each feature, read from the same file through pandas
    frame = datasets.read_frame(path)
    fitted = featurize.fit_featurizer(frame, target, featurize.target_task(frame[target]))
    by_featurize = {column["name"]: column["kind"] for column in fitted.feature_columns}
    assert by_featurize == {name: kind for name, kind in for_models.items() if name != target}

    # monitor_drift: tested columns (numerical or categorical, by its own statistics; date text as text, as
    # Evidently does) and the ones it skips
    names, kinds, skipped = drift._select_columns(arrow_schema, arrow_schema, None, [], {}, path, path)
    by_drift = {name: schema.NUMERIC if ColumnStats(kinds[name]).numeric else schema.CATEGORICAL for name in names}
    assert by_drift == {name: kind for name, kind in expected.items() if kind in (schema.NUMERIC, schema.CATEGORICAL)}
    assert set(skipped) == {name for name, kind in expected.items() if kind not in (schema.NUMERIC, schema.CATEGORICAL)}

    # the server: the payload columns of a model with this featurizer (its signature, as load_model reads it)
    inputs = [(spec.name, spec.type.name) for spec in signature_for(fitted).inputs.inputs]
    columns = Columns(inputs)
    by_server = {
        name: schema.NUMERIC if numeric else (schema.DATETIME if kind == "datetime" else schema.CATEGORICAL)
        for name, kind, numeric in zip(columns.names, columns.types, columns.numeric)
    }
    assert by_server == by_featurize


def test_every_column_as_target_makes_one_task(sample):
    from kfp_ct.components.featurize import core as featurize

    path, arrow_schema, _ = sample
    frame = datasets.read_frame(path)
    tasks = {}
    for field in arrow_schema:
        _, by_validate = _validate_types(path, field.name)
        try:
            by_featurize = featurize.target_task(frame[field.name])
        except ValueError as err:
            assert "no task follows from it" in str(err)
            by_featurize = None
        assert by_validate["task"] == by_featurize, field.name
        tasks[field.name] = by_featurize
    assert schema.CLASSIFICATION in tasks.values() and schema.REGRESSION in tasks.values()
