"""The drift splits of the shared datasets (each folder's SOURCE.md), as Parquet windows written once per session."""

from __future__ import annotations

import pytest

# name -> (file, which rows are the reference, which the current window), as each SOURCE.md splits it
SPLITS = {
    "bike_sharing": ("bike_sharing/hour.csv", lambda f: f["yr"] == 0, lambda f: f["yr"] == 1),
    "elec2": (
        "elec2/elec2_enriched.csv.gz",
        lambda f: f["day_index"] < 365,
        lambda f: f["approx_date"] >= "1998-01-01",
    ),
    "weather_nebraska": (
        "weather_nebraska/weather.csv",
        lambda f: f["day_index"] < 12000,
        lambda f: f["day_index"] >= 12000,
    ),
}
SMALL_REFERENCE, SMALL_CURRENT = 800, 600  # <= 1000 reference values: the K-S / chi-squared / Z-test paths


def _write(frame, path) -> str:
    from kfp_ct.components._common import datasets

    datasets.write_frame(frame.reset_index(drop=True), path, "test")
    return str(path)


@pytest.fixture(scope="session")
def windows(shared_data, tmp_path_factory):
    """{(dataset, 'full' or 'small'): (reference path, current path)}; 'small' samples the same split."""
    import pandas as pd

    folder = tmp_path_factory.mktemp("drift_windows")
    out = {}
    for name, (file, is_ref, is_cur) in SPLITS.items():
        frame = pd.read_csv(shared_data / file)
        ref, cur = frame[is_ref(frame)], frame[is_cur(frame)]
        out[name, "full"] = (_write(ref, folder / f"{name}_ref.parquet"), _write(cur, folder / f"{name}_cur.parquet"))
        out[name, "small"] = (
            _write(ref.sample(SMALL_REFERENCE, random_state=1), folder / f"{name}_ref_s.parquet"),
            _write(cur.sample(SMALL_CURRENT, random_state=2), folder / f"{name}_cur_s.parquet"),
        )
    return out
