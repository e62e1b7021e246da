"""validate on the real datasets: infer on one period, check the next against it, as continuous training does."""

from __future__ import annotations

import pytest

from kfp_ct.components.ingest.core import ingest
from kfp_ct.components.validate import core

ELEC2_COLUMNS = [
    "day_index",
    "approx_date",
    "date",
    "day",
    "period",
    "nswprice",
    "nswdemand",
    "vicprice",
    "vicdemand",
    "transfer",
    "class",
]


def findings(result: core.ValidateResult) -> set[tuple[str | None, str]]:
    return {(a.column, a.kind) for a in result.anomalies}


@pytest.fixture(scope="module")
def elec2(shared_data, tmp_path_factory):
    """elec2's natural periods (SOURCE.md), split on day_index / approx_date, each with its schema."""
    root = tmp_path_factory.mktemp("elec2")
    source = str(shared_data / "elec2" / "elec2_enriched.csv.gz")
    windows = {
        "first_year": {"end": "1997-05-07"},
        "constant_stretch": {"end": "1997-05-05"},
        "late_1997": {"start": "1997-05-05", "end": "1998-01-01"},
        "1998": {"start": "1998-01-01"},
    }
    paths = {}
    for name, window in windows.items():
        paths[name] = str(root / f"{name}.parquet")
        ingest(source_uri=source, output_path=paths[name], time_column="approx_date", **window)
        core.write_schema(core.infer_schema(paths[name], "class"), str(root / f"{name}.json"))
    return {name: (path, path.replace(".parquet", ".json")) for name, path in paths.items()}


def test_elec2_first_year_schema(elec2):
    schema = core.load_schema(elec2["first_year"][1])
    assert schema["rows"] == 365 * 48 and schema["column_order"] == ELEC2_COLUMNS
    assert schema["target"] == {
        "column": "class",
        "type": "string",
        "task": "classification",
        "classes": ["DOWN", "UP"],
    }
    columns = schema["columns"]
    assert columns["approx_date"]["type"] == "date"
    assert (columns["approx_date"]["min"], columns["approx_date"]["max"]) == ("1996-05-07", "1997-05-06")
    assert columns["day"]["categories"] == [[day, 2496 if day != 2 else 2544] for day in range(1, 8)]
    assert columns["nswprice"]["type"] == "float" and columns["nswprice"]["null_fraction"] == 0.0
    assert all(not c["constant"] for c in columns.values())  # vic* vary on the last two days of the first year


def test_elec2_1998_against_the_first_year_warns_and_passes(elec2):
    """The SOURCE.md split: transfer and vicdemand move out of the first year's range; time columns move on."""
    result = core.validate(
        dataset_path=elec2["1998"][0], target_column="class", reference_schema_path=elec2["first_year"][1]
    )
    assert not result.blocking
    result.raise_for_blocking()
    assert findings(result) == {
        ("day_index", "out_of_range"),
        ("approx_date", "out_of_range"),
        ("date", "out_of_range"),
        ("transfer", "out_of_range"),
        ("vicdemand", "out_of_range"),
    }
    transfer = next(a for a in result.anomalies if a.column == "transfer")
    assert "14047 of 16320 (86.07%) outside, range [0.033772, 0.946053]" in transfer.found
    assert result.schema["rows"] == 16320 and result.schema["target"]["classes"] == ["DOWN", "UP"]


def test_elec2_constant_stretch_is_found(elec2):
    """vicprice, vicdemand and transfer are one imputed value for the first 363 days, and vary in 1998."""
    stretch = core.validate(dataset_path=elec2["constant_stretch"][0], target_column="class")
    assert stretch.schema["rows"] == 363 * 48
    assert findings(stretch) == {(c, "constant_column") for c in ("vicprice", "vicdemand", "transfer")}
    assert not stretch.blocking
    result = core.validate(
        dataset_path=elec2["1998"][0], target_column="class", reference_schema_path=elec2["constant_stretch"][1]
    )
    assert {(c, "constant_varied") for c in ("vicprice", "vicdemand", "transfer")} <= findings(result)
    assert not result.blocking
    vicprice = next(a for a in result.anomalies if a.column == "vicprice")
    assert str(vicprice) == (
        "column 'vicprice': constant_varied: expected the reference's single value 0.003467, "
        "found values from 0.0 to 0.366515"
    )


def test_elec2_1998_against_late_1997(elec2):
    result = core.validate(
        dataset_path=elec2["1998"][0], target_column="class", reference_schema_path=elec2["late_1997"][1]
    )
    assert findings(result) == {
        ("day_index", "out_of_range"),
        ("approx_date", "out_of_range"),
        ("date", "out_of_range"),
    }


@pytest.fixture(scope="module")
def bike(shared_data, tmp_path_factory):
    """bike_sharing hour.csv split by year (yr 0 = 2011, yr 1 = 2012), on dteday."""
    root = tmp_path_factory.mktemp("bike")
    source = str(shared_data / "bike_sharing" / "hour.csv")
    ingest(source_uri=source, output_path=str(root / "2011.parquet"), time_column="dteday", end="2012-01-01")
    ingest(source_uri=source, output_path=str(root / "2012.parquet"), time_column="dteday", start="2012-01-01")
    core.write_schema(core.infer_schema(str(root / "2011.parquet"), "cnt"), str(root / "2011.json"))
    return str(root / "2011.parquet"), str(root / "2011.json"), str(root / "2012.parquet")


def test_bike_sharing_2011_schema(bike):
    result = core.validate(dataset_path=bike[0], target_column="cnt")
    schema = result.schema
    assert schema["rows"] == 8645
    assert schema["target"] == {"column": "cnt", "type": "int", "task": "regression", "classes": None}
    columns = schema["columns"]
    assert {name: c["type"] for name, c in columns.items() if c["type"] != "int"} == {
        "dteday": "date",
        "temp": "float",
        "atemp": "float",
        "hum": "float",
        "windspeed": "float",
    }
    assert columns["hr"]["distinct"] == 24 and columns["season"]["categories"][0][0] == 1
    assert columns["cnt"]["categories"] is None and (columns["cnt"]["min"], columns["cnt"]["max"]) == (1, 651)
    assert findings(result) == {("yr", "constant_column")}  # yr is 0 all through 2011


def test_bike_sharing_2012_against_2011(bike):
    """Demand grows about 60%: the target and registered leave 2011's range; weather stays within it."""
    result = core.validate(dataset_path=bike[2], target_column="cnt", reference_schema_path=bike[1])
    assert not result.blocking
    assert findings(result) == {
        ("instant", "out_of_range"),
        ("dteday", "out_of_range"),
        ("yr", "unseen_categories"),
        ("registered", "out_of_range"),
        ("cnt", "out_of_range"),
    }
    cnt = next(a for a in result.anomalies if a.column == "cnt")
    assert "470 of 8734 (5.38%) outside, range [1, 977]" in cnt.found
    assert not {"temp", "atemp", "hum", "windspeed"} & {a.column for a in result.anomalies}
    # with no tolerance, the casual riders' growth (0.86% above 2011's maximum) and two hot hours show too
    tight = core.validate(
        dataset_path=bike[2], target_column="cnt", reference_schema_path=bike[1], out_of_range_tolerance=0.0
    )
    assert findings(tight) - findings(result) == {("casual", "out_of_range"), ("temp", "out_of_range")}
    assert not tight.blocking


def test_bike_sharing_with_a_dropped_column_blocks(bike, tmp_path):
    import pyarrow.parquet as pq

    path = str(tmp_path / "2012_no_weather.parquet")
    pq.write_table(pq.read_table(bike[2]).drop_columns(["weathersit"]), path)
    with pytest.raises(
        ValueError,
        match=r"1 blocking anomaly:\n- column 'weathersit': missing_column: expected a "
        r"column of type int, found no such column$",
    ):
        core.validate(dataset_path=path, target_column="cnt", reference_schema_path=bike[1]).raise_for_blocking()
