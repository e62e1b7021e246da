"""Canary analysis: a sample of real rows is replayed, one row per V1 request, to the stable and the canary model for a
bake time, and the canary is judged against the stable on what that traffic showed:

- error rate: the share of the canary's requests that failed (an HTTP error, a timeout, an answer without
  predictions), at most `Bounds.max_error_rate`;
- latency: the canary's p99 over the stable's p99, at most `Bounds.max_latency_ratio`;
- prediction shift: how far the canary's answers are from the stable's on the rows both answered, at most
  `Bounds.max_prediction_shift`: for classification the share of rows whose label changed, for regression the
  relative error sum|canary - stable| / sum|stable|.

The two are sent each row in turn (which goes first alternates), so that both see the same load. Replay goes on until
the bake time has passed and every row of the sample (at least `MIN_PAIRS` requests) was sent to both: the verdict
is drawn from the same rows however fast the servers answer. A canary that breaks any bound is rejected
(`CanaryRejected`, naming each bound broken and the figures); the caller rolls it back.

The rows are a Parquet dataset (a file or a folder, hive-partitioned or not, e.g. captured traffic in
`model=<name>/dt=<day>/hour=<h>/*.parquet`; a path, file://, gs://, s3:// or minio://) that holds the model's input
columns.
"""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from kfp_ct.components._common import storage

SAMPLE_ROWS = 200
"""How many rows of the dataset are replayed (a seeded random sample when it holds more)."""
MIN_PAIRS = 20
"""The fewest requests sent to both models, however short the bake time and small the sample."""
REQUEST_TIMEOUT_S = 10.0
"""A request unanswered after this long counts as an error."""


@dataclass(frozen=True)
class Bounds:
    """What a canary must stay within to be promoted."""

    max_error_rate: float = 0.01
    max_latency_ratio: float = 1.5
    max_prediction_shift: float = 0.1

    def __post_init__(self):
        if not 0 <= self.max_error_rate <= 1:
            raise ValueError(f"canary_max_error_rate must be within 0..1, got {self.max_error_rate}")
        if not self.max_latency_ratio > 0:
            raise ValueError(f"canary_max_latency_ratio must be > 0, got {self.max_latency_ratio}")
        if not self.max_prediction_shift >= 0:
            raise ValueError(f"canary_max_prediction_shift must be >= 0, got {self.max_prediction_shift}")


class CanaryRejected(RuntimeError):
    """The canary broke at least one bound; `analysis` holds the figures."""

    def __init__(self, analysis: CanaryAnalysis):
        super().__init__(analysis.verdict())
        self.analysis = analysis


# --- the rows --------------------------------------------------------------------------------------------------------


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "isoformat"):  # dates and times travel as ISO text, as the server parses them
        return value.isoformat()
    return value


def _local_dataset(uri: str, scheme: str, tmp: str) -> str:
    if not scheme:
        path = storage.split_uri(uri)[2]
        if not os.path.exists(path):
            raise FileNotFoundError(f"canary rows not found: {path}")
        return path
    try:
        storage.download_prefix(uri, tmp)  # a folder of Parquet files
        return tmp
    except FileNotFoundError:  # or a single file
        path = os.path.join(tmp, os.path.basename(uri.rstrip("/")))
        storage.download_file(uri, path)
        return path


def load_rows(
    uri: str, columns: list[str], model_name: str | None = None, sample_rows: int = SAMPLE_ROWS, seed: int = 0
) -> list[dict]:
    """Up to `sample_rows` rows of the Parquet dataset at `uri` as JSON records of `columns` (a seeded sample).

    A hive partition `model=` (captured traffic of several models) is narrowed to `model_name`. Raises ValueError
    naming the columns the dataset lacks, or when it holds no rows; FileNotFoundError when nothing is at `uri`.
    """
    import numpy as np
    import pyarrow.dataset as ds

    scheme = storage.check_scheme(uri, "canary rows URI")
    with tempfile.TemporaryDirectory(prefix="kfp-ct-canary-rows-") as tmp:
        dataset = ds.dataset(_local_dataset(uri, scheme, tmp), format="parquet", partitioning="hive")
        names = dataset.schema.names
        missing = [c for c in columns if c not in names]
        if missing:
            raise ValueError(
                f"the canary rows at {uri} lack the model's input column(s) {', '.join(missing)} "
                f"(they have: {', '.join(names)})"
            )
        where = None
        if model_name and "model" in names and "model" not in columns:
            where = ds.field("model") == model_name
        table = dataset.to_table(columns=columns, filter=where)
    if table.num_rows == 0:
        narrowed = f" for model={model_name}" if where is not None else ""
        raise ValueError(f"the canary rows at {uri} hold no rows{narrowed}")
    if table.num_rows > sample_rows:
        chosen = np.random.default_rng(seed).choice(table.num_rows, sample_rows, replace=False)
        table = table.take(np.sort(chosen))
    return [{k: _json_value(v) for k, v in row.items()} for row in table.to_pylist()]


# --- the replay ----------------------------------------------------------------------------------------------------


@dataclass
class Traffic:
    """What one model answered during the replay: per request its latency and its prediction (None: it failed)."""

    latencies_s: list[float] = field(default_factory=list)
    predictions: list = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None

    def record(self, latency_s: float, prediction, error: str | None) -> None:
        self.latencies_s.append(latency_s)
        self.predictions.append(None if error else prediction)
        if error:
            self.errors += 1
            self.first_error = self.first_error or error

    def error_rate(self) -> float:
        return self.errors / len(self.latencies_s) if self.latencies_s else 1.0

    def p99_ms(self) -> float:
        import numpy as np

        return float(np.percentile(self.latencies_s, 99) * 1000) if self.latencies_s else math.inf


def predict_one(base_url: str, model_name: str, row: dict, timeout_s: float = REQUEST_TIMEOUT_S):
    """(latency in s, the prediction, None) of one V1 request for `row`, or (latency, None, why it failed)."""
    body = json.dumps({"instances": [row]}).encode()
    request = urllib.request.Request(
        f"{base_url}/v1/models/{model_name}:predict", data=body, headers={"content-type": "application/json"}
    )
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            answer = json.loads(response.read())
        latency = time.perf_counter() - start
    except urllib.error.HTTPError as err:
        text = err.read().decode(errors="replace")[:300]
        return time.perf_counter() - start, None, f"HTTP {err.code}: {text}"
    except (OSError, ValueError) as err:
        return time.perf_counter() - start, None, f"{type(err).__name__}: {err}"
    predictions = answer.get("predictions") if isinstance(answer, dict) else None
    if not isinstance(predictions, list) or len(predictions) != 1:
        return latency, None, f"no prediction in the answer: {json.dumps(answer)[:300]}"
    return latency, predictions[0], None


def replay(
    stable_url: str,
    canary_url: str,
    model_name: str,
    rows: list[dict],
    bake_s: float,
    clock: Callable[[], float] = time.monotonic,
    timeout_s: float = REQUEST_TIMEOUT_S,
) -> tuple[Traffic, Traffic]:
    """Sends the rows in turn to both models (cycling through them) until `bake_s` has passed and every row (at
    least `MIN_PAIRS` requests) went to both; returns (stable's traffic, canary's traffic)."""
    if not rows:
        raise ValueError("no rows to replay to the canary")
    stable, canary = Traffic(), Traffic()
    deadline = clock() + bake_s
    sent = 0
    while sent < max(MIN_PAIRS, len(rows)) or clock() < deadline:
        row = rows[sent % len(rows)]
        order = [(stable, stable_url), (canary, canary_url)]
        for traffic, url in order if sent % 2 == 0 else order[::-1]:
            traffic.record(*predict_one(url, model_name, row, timeout_s))
        sent += 1
    return stable, canary


# --- the analysis --------------------------------------------------------------------------------------------------


def prediction_shift(stable: list, canary: list, task: str) -> tuple[float, int]:
    """(shift, rows compared) over the rows both answered: the share of changed labels (classification) or
    sum|canary - stable| / sum|stable| (regression); NaN when no row was answered by both."""
    pairs = [(s, c) for s, c in zip(stable, canary) if s is not None and c is not None]
    if not pairs:
        return math.nan, 0
    if task == "classification":
        return sum(str(s) != str(c) for s, c in pairs) / len(pairs), len(pairs)
    difference = sum(abs(float(c) - float(s)) for s, c in pairs)
    scale = sum(abs(float(s)) for s, _ in pairs)
    if scale == 0:
        return (0.0 if difference == 0 else math.inf), len(pairs)
    return difference / scale, len(pairs)


@dataclass
class CanaryAnalysis:
    """The figures of one canary analysis, the bounds, and each bound broken (`breaches`, empty when it passed)."""

    task: str
    bake_s: float
    rows_uri: str
    bounds: Bounds
    requests: int
    stable_error_rate: float
    canary_error_rate: float
    stable_p99_ms: float
    canary_p99_ms: float
    latency_ratio: float
    prediction_shift: float
    rows_compared: int
    canary_first_error: str | None = None
    breaches: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.breaches

    @property
    def shift_measure(self) -> str:
        return "share of changed labels" if self.task == "classification" else "relative error"

    def verdict(self) -> str:
        figures = (
            f"{self.requests} rows replayed to both over {self.bake_s:g} s: error rate {self.canary_error_rate:.2%} "
            f"(stable {self.stable_error_rate:.2%}), p99 {self.canary_p99_ms:.1f} ms vs {self.stable_p99_ms:.1f} ms "
            f"(ratio {self.latency_ratio:.2f}), prediction shift {self.prediction_shift:.4f} ({self.shift_measure}, "
            f"{self.rows_compared} rows)"
        )
        if self.passed:
            return f"canary analysis passed: {figures}"
        return f"canary analysis failed: {'; '.join(self.breaches)} [{figures}]"

    def to_dict(self) -> dict:
        """JSON-ready (infinite or undefined figures as null)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = None
        out["passed"] = self.passed
        out["shift_measure"] = self.shift_measure
        return out

    def metrics(self) -> dict[str, float]:
        """The figures as KFP metrics (finite ones only)."""
        figures = {
            "canary_error_rate": self.canary_error_rate,
            "canary_stable_error_rate": self.stable_error_rate,
            "canary_p99_ms": self.canary_p99_ms,
            "canary_stable_p99_ms": self.stable_p99_ms,
            "canary_latency_ratio": self.latency_ratio,
            "canary_prediction_shift": self.prediction_shift,
        }
        return {k: float(v) for k, v in figures.items() if math.isfinite(v)}

    def html(self) -> str:
        """A self-contained page (the KFP UI shows it in an iframe): the figures, bounds and verdicts."""

        def row(what: str, stable: str, canary: str, bound: str, ok: bool) -> str:
            cells = "".join(f"<td>{html.escape(c)}</td>" for c in (what, stable, canary, bound))
            verdict = '<td class="ok">within</td>' if ok else '<td class="bad">broken</td>'
            return f"<tr>{cells}{verdict}</tr>"

        b = self.bounds
        rows = [
            row(
                "error rate",
                f"{self.stable_error_rate:.2%}",
                f"{self.canary_error_rate:.2%}",
                f"<= {b.max_error_rate:.2%}",
                self.canary_error_rate <= b.max_error_rate,
            ),
            row(
                "p99 latency",
                f"{self.stable_p99_ms:.1f} ms",
                f"{self.canary_p99_ms:.1f} ms (x{self.latency_ratio:.2f})",
                f"<= x{b.max_latency_ratio:g} the stable's",
                self.latency_ratio <= b.max_latency_ratio,
            ),
            row(
                f"prediction shift ({self.shift_measure})",
                "",
                f"{self.prediction_shift:.4f} over {self.rows_compared} rows",
                f"<= {b.max_prediction_shift:g}",
                self.prediction_shift <= b.max_prediction_shift,
            ),
        ]
        title = "promoted" if self.passed else "rolled back"
        details = "".join(f"<li>{html.escape(x)}</li>" for x in self.breaches)
        error = (
            f"<p>First canary error: <code>{html.escape(self.canary_first_error)}</code></p>"
            if self.canary_first_error
            else ""
        )
        return (
            '<!doctype html><html><head><meta charset="utf-8"><title>Canary analysis</title><style>'
            "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:.3em .7em;text-align:left}.ok{color:#17702b}.bad{color:#b00020}"
            f"</style></head><body><h1>Canary analysis: {title}</h1>"
            f"<p>{self.requests} rows of {html.escape(self.rows_uri)} replayed to the stable and the canary model "
            f"over {self.bake_s:g} s.</p><table><tr><th>comparison</th><th>stable</th><th>canary</th><th>bound</th>"
            f"<th>verdict</th></tr>{''.join(rows)}</table>"
            f"{f'<ul>{details}</ul>' if details else ''}{error}</body></html>"
        )


def analyse(stable: Traffic, canary: Traffic, task: str, bounds: Bounds, bake_s: float, rows_uri: str):
    """The CanaryAnalysis of one replay: the figures, and each bound they break."""
    stable_p99, canary_p99 = stable.p99_ms(), canary.p99_ms()
    ratio = canary_p99 / stable_p99 if stable_p99 > 0 else math.inf
    shift, compared = prediction_shift(stable.predictions, canary.predictions, task)
    analysis = CanaryAnalysis(
        task=task,
        bake_s=bake_s,
        rows_uri=rows_uri,
        bounds=bounds,
        requests=len(canary.latencies_s),
        stable_error_rate=stable.error_rate(),
        canary_error_rate=canary.error_rate(),
        stable_p99_ms=stable_p99,
        canary_p99_ms=canary_p99,
        latency_ratio=ratio,
        prediction_shift=shift,
        rows_compared=compared,
        canary_first_error=canary.first_error,
    )
    if analysis.canary_error_rate > bounds.max_error_rate:
        first = f" (first: {canary.first_error})" if canary.first_error else ""
        analysis.breaches.append(
            f"error rate {analysis.canary_error_rate:.2%} > canary_max_error_rate {bounds.max_error_rate:.2%}{first}"
        )
    if not ratio <= bounds.max_latency_ratio:
        analysis.breaches.append(
            f"p99 latency {canary_p99:.1f} ms is {ratio:.2f}x the stable's {stable_p99:.1f} ms > "
            f"canary_max_latency_ratio {bounds.max_latency_ratio:g}"
        )
    if compared == 0:
        analysis.breaches.append("prediction shift: no row was answered by both models")
    elif not shift <= bounds.max_prediction_shift:
        analysis.breaches.append(
            f"prediction shift {shift:.4f} ({analysis.shift_measure} over {compared} rows) > "
            f"canary_max_prediction_shift {bounds.max_prediction_shift:g}"
        )
    return analysis


@dataclass
class Judge:
    """judge(stable_url, canary_url) replays `rows` to both for `bake_s` and raises CanaryRejected when the canary
    breaks a bound; the last analysis stays in `analysis`."""

    model_name: str
    rows: list[dict]
    task: str
    bounds: Bounds
    bake_s: float
    rows_uri: str
    log: Callable[[str], None] = print
    analysis: CanaryAnalysis | None = None

    def __call__(self, stable_url: str, canary_url: str) -> CanaryAnalysis:
        self.log(f"canary analysis: replaying {len(self.rows)} rows to {stable_url} and {canary_url}")
        stable, canary = replay(stable_url, canary_url, self.model_name, self.rows, self.bake_s)
        self.analysis = analyse(stable, canary, self.task, self.bounds, self.bake_s, self.rows_uri)
        self.log(self.analysis.verdict())
        if not self.analysis.passed:
            raise CanaryRejected(self.analysis)
        return self.analysis
