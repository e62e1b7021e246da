"""The HTML drift report: the full-data verdicts, then Evidently's own DataDriftPreset dashboard rendered on a bounded
random sample of each window; and Evidently's verdicts on DataFrames, the baseline the tests and the benchmark
compare with."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np
import pyarrow as pa

from kfp_ct.components._common import datasets
from kfp_ct.components.monitor_drift import stats
from kfp_ct.components.monitor_drift.stats import STAT_TESTS

if TYPE_CHECKING:
    from kfp_ct.components.monitor_drift.core import DriftResult, Triggers


@dataclass
class EvidentlyDrift:
    snapshot: object
    columns: dict  # column -> {"test": display name, "score", "threshold", "drifted"}
    share_of_drifted_columns: float
    dataset_drift: bool


def evidently_drift(
    reference,
    current,
    columns: Optional[list] = None,
    column_tests: Optional[dict] = None,
    drift_share: float = 0.5,
    column_types: Optional[dict] = None,
) -> EvidentlyDrift:
    """Evidently's own DataDriftPreset on two pandas DataFrames, with its per-column verdicts.

    `column_types` ({column: 'num' or 'cat'}) fixes the column types instead of letting Evidently infer them from
    the data (a sample may look different from the whole)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    tests = stats.parse_column_tests(column_tests)
    definition = None
    if column_types:
        definition = DataDefinition(
            numerical_columns=[c for c, t in column_types.items() if t == "num"],
            categorical_columns=[c for c, t in column_types.items() if t == "cat"],
            text_columns=[],
            datetime_columns=[],
            unknown_columns=[],
            list_columns=[],
        )
    preset = DataDriftPreset(
        columns=columns,
        drift_share=drift_share,
        per_column_method={c: t["test"] for c, t in tests.items() if t["test"]} or None,
        per_column_threshold={c: t["threshold"] for c, t in tests.items() if t["threshold"] is not None} or None,
    )
    snapshot = Report([preset], include_tests=True).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    data = snapshot.dict()
    status = {
        t["metric_config"]["metric_id"]: str(getattr(t["status"], "value", t["status"]))
        for t in data["tests"]
        if t["id"] == "drift"
    }
    result, share = {}, None
    for metric in data["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif config["type"].endswith(":ValueDrift"):
            method = config["method"]
            display = STAT_TESTS[method].display_name if method in STAT_TESTS else method
            result[config["column"]] = {
                "test": display,
                "score": float(metric["value"]),
                "threshold": float(config["threshold"]),
                "drifted": status[metric["id"]] == "FAIL",
            }
    return EvidentlyDrift(snapshot, result, share, bool(share >= drift_share))


def sample_frame(path: str, rows: int, columns: Optional[list] = None, seed: int = 0):
    """A uniform random sample of at most `rows` rows (in file order), read batch by batch: bounded memory."""
    file = datasets.open_dataset(path)
    total = file.metadata.num_rows
    if total <= rows:
        return file.read(columns=columns).to_pandas()
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=rows, replace=False))
    parts, start = [], 0
    for batch in stats.batches(path, columns or file.schema_arrow.names):
        lo, hi = np.searchsorted(chosen, [start, start + batch.num_rows])
        if hi > lo:
            parts.append(batch.take(pa.array(chosen[lo:hi] - start)))
        start += batch.num_rows
    return pa.Table.from_batches(parts).to_pandas()


def _not_judged_line(result: DriftResult) -> str:
    n = len(result.not_judged)
    if not n:
        return ""
    return f"{n} of {len(result.columns)} columns not judged: not enough rows (see each column's verdict). "


def _summary_html(
    result: DriftResult, triggers: Optional[Triggers], sampled: tuple[int, int], problem: Optional[str] = None
) -> str:
    def cell(value) -> str:
        if isinstance(value, float):
            value = f"{value:.4g}"
        return f"<td style='padding:2px 10px'>{html.escape(str(value))}</td>"

    rows = "".join(
        "<tr>"
        + "".join(
            cell(v)
            for v in (
                c.column,
                c.column_type,
                c.test_display_name,
                c.score if c.judged else "",
                c.threshold,
                "DRIFTED" if c.drifted else "ok" if c.judged else c.note,
            )
        )
        + "</tr>"
        for c in result.columns
    )
    head = "".join(
        f"<th style='padding:2px 10px;text-align:left'>{h}</th>"
        for h in ("column", "type", "test", "score", "threshold", "verdict")
    )
    fired = ", ".join(triggers.fired) if triggers and triggers.fired else "none"
    lines = [
        f"<h2>Drift: {'DATASET DRIFT' if result.dataset_drift else 'no dataset drift'}</h2>",
        f"<p>{result.number_of_drifted_columns} of {len(result.columns) - len(result.not_judged)} judged columns "
        f"drifted (share {result.share_of_drifted_columns:.3f}; dataset drift when the share is &gt;= "
        f"{result.drift_share}). {_not_judged_line(result)}"
        f"Reference rows: {result.reference_rows}; current rows: {result.current_rows}. "
        f"Retraining triggers fired: {html.escape(fired)}.</p>",
        f"<table style='border-collapse:collapse'><tr>{head}</tr>{rows}</table>",
    ]
    if result.skipped:
        lines.append(
            "<p>Not tested: " + html.escape("; ".join(f"{k}: {v}" for k, v in result.skipped.items())) + "</p>"
        )
    if problem:
        lines.append(f"<p>The Evidently dashboard could not be rendered: {html.escape(problem)}</p>")
    else:
        lines.append(
            f"<p>These verdicts are on all rows. The Evidently dashboard below shows a random sample of "
            f"{sampled[0]} reference and {sampled[1]} current rows, with the same tests.</p>"
        )
    return "<div style='font-family:sans-serif;margin:16px'>" + "".join(lines) + "</div>"


def render_report(
    reference_path: str,
    current_path: str,
    result: DriftResult,
    report_path: str,
    triggers: Optional[Triggers] = None,
    sample_rows: int = 5000,
    seed: int = 0,
) -> None:
    """Writes a self-contained HTML report at `report_path` (atomically): the full-data verdicts, then Evidently's
    DataDriftPreset dashboard rendered on a random sample of at most `sample_rows` rows of each window."""
    if sample_rows < 1:
        raise ValueError(f"report_sample_rows must be at least 1, got {sample_rows}")
    names = [c.column for c in result.columns]
    reference = sample_frame(reference_path, sample_rows, names, seed)
    current = sample_frame(current_path, sample_rows, names, seed + 1)
    tests = {c.column: {"test": c.test, "threshold": c.threshold} for c in result.columns}
    types = {c.column: "cat" if c.test in ("chisquare", "z") else c.column_type for c in result.columns}
    problem = None
    try:
        page = evidently_drift(reference, current, names, tests, result.drift_share, types).snapshot.get_html_str(
            as_iframe=False
        )
    except (ValueError, TypeError, KeyError) as err:  # e.g. a column with no values in the sample
        problem, page = f"{type(err).__name__}: {err}", "<html><body></body></html>"
    summary = _summary_html(result, triggers, (len(reference), len(current)), problem)
    at = page.find(">", page.find("<body")) + 1 if "<body" in page else 0
    with datasets.atomic_path(report_path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        out.write(page[:at] + summary + page[at:])


def render_no_new_data(report_path: str, where: str, reference_rows: int) -> None:
    """Writes the report of an empty current window (atomically): no new data, nothing compared, nothing triggered."""
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>No new data</title></head><body>"
        f"<h2>No new data</h2><p>The current window has no rows{html.escape(where)}: nothing was compared with the "
        f"reference ({reference_rows} rows), and no retraining trigger fired.</p></body></html>"
    )
    with datasets.atomic_path(report_path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        out.write(page)
