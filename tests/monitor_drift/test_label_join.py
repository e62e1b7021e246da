"""Ground truth that arrives later: a labels source keyed by request id joined to the captured predictions of the
window; the performance-decay trigger judges the served model's own answers on the labelled rows (never a
re-scoring) and states how many rows had a label, with missing and repeated labels and repeated captured rows."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from kfp_ct.components._common import capture, datasets, tracking
from kfp_ct.components._common.model import load_model
from kfp_ct.components._common.training import validation_metrics
from kfp_ct.components.monitor_drift import core
from kfp_ct.components.push.server import Columns


@pytest.fixture(scope="module")
def champion(elec2_split, sqlite_tracking, tmp_path_factory):
    from kfp_ct.components.train_sklearn.core import train_sklearn

    folder = tmp_path_factory.mktemp("labels")
    name = "elec2-labels"
    outcome = train_sklearn(
        train_path=elec2_split["train"],
        featurizer_path=elec2_split["featurizer"],
        model_path=str(folder / "model"),
        model_name=name,
        hyperparameters={"max_iter": 30},
        seed=0,
        tracking_uri=sqlite_tracking,
    )
    tracking.promote(name, outcome.version, tracking_uri=sqlite_tracking)
    return {"name": name, "model": load_model(folder / "model"), "folder": folder, "recorded": outcome.metrics}


def captured_window(champion, test_path: str, answers: str, tmp_path) -> tuple[str, pd.DataFrame]:
    """The test rows as the served model's capture (one request each), answered by the model (`answers="own"`) or
    with its probabilities reversed (`"reversed"`: what a broken server would have said); the window's dataset."""
    model = champion["model"]
    names = [n for n, _ in model.input_columns]
    test = datasets.read_frame(test_path).head(400)
    proba = model.predict_proba(test[names])
    if answers == "reversed":
        proba = proba[:, ::-1]
    classes = np.asarray(model.classes, dtype=object)
    schema = capture.CaptureSchema(model.input_columns, model.task, list(model.classes))
    buffer = capture.RowBuffer(schema)
    now = datetime(2026, 11, 30, 7, tzinfo=UTC)
    columns = Columns(model.input_columns).from_instances(test[names].to_dict("records"))
    ids = [f"req-{i}" for i in range(len(test))]
    buffer.extend(
        ids,
        [0] * len(test),
        [now] * len(test),
        ["v1"] * len(test),
        columns,
        classes[np.argmax(proba, axis=1)].tolist(),
        proba.tolist(),
    )
    table = buffer.table()
    # one row captured twice (the same request id): kept once
    table = pa.concat_tables([table, table.slice(0, 1)])
    path = str(tmp_path / f"window-{answers}.parquet")
    datasets.write_table(table, path, "capture")
    return path, test.assign(request_id=ids)


def labels_file(test: pd.DataFrame, tmp_path) -> tuple[str, list[str]]:
    """Labels for 300 of the 400 requests, one given twice (same label), one given two different labels, and one
    for a request that was never captured."""
    labelled = test.head(300)[["request_id", "class"]]
    extra = pd.DataFrame(
        {
            "request_id": ["req-1", "req-2", "req-never"],
            "class": [test["class"].iloc[1], "UP" if test["class"].iloc[2] == "DOWN" else "DOWN", "UP"],
        }
    )
    path = tmp_path / "labels.csv"
    pd.concat([labelled, extra]).to_csv(path, index=False)
    return str(path), [r for r in labelled["request_id"] if r != "req-2"]


def test_the_served_models_own_answers_are_judged_and_the_labels_counted(
    champion, elec2_split, sqlite_tracking, tmp_path
):
    window, test = captured_window(champion, elec2_split["test"], "own", tmp_path)
    labels, kept = labels_file(test, tmp_path)
    fired, details = core.performance_decay(
        window, "class", champion["name"], 0.05, sqlite_tracking, labels=labels, label_id_column="request_id"
    )
    assert details["current_from"] == "the served model's captured predictions"
    assert details["labelled_rows"] == 299  # 300 labelled, less the one with conflicting labels
    assert details["unlabelled_rows"] == 101 and details["captured_rows"] == 400
    assert details["repeated_labels"] == 1 and details["conflicting_label_keys"] == 1
    assert details["repeated_captured_rows"] == 1 and details["labels_without_prediction"] == 1
    # the metric is that of the captured probabilities on exactly the kept rows
    model = champion["model"]
    rows = test.set_index("request_id").loc[kept]
    expected = validation_metrics(
        "classification",
        model.featurizer.encode_target(rows["class"]),
        model.predict_proba(rows[[n for n, _ in model.input_columns]]),
    )
    assert details["metric"] == "roc_auc" and details["current"] == pytest.approx(expected["roc_auc"])
    assert fired is False


def test_reversed_answers_fire_the_trigger_where_a_rescoring_would_not(
    champion, elec2_split, sqlite_tracking, tmp_path
):
    window, test = captured_window(champion, elec2_split["test"], "reversed", tmp_path)
    labels, _ = labels_file(test, tmp_path)
    fired, details = core.performance_decay(window, "class", champion["name"], 0.05, sqlite_tracking, labels=labels)
    assert details["current"] < 0.5 < details["recorded"] and fired is True


def test_no_label_for_the_window_leaves_the_trigger_unchecked_and_says_so(
    champion, elec2_split, sqlite_tracking, tmp_path
):
    window, _ = captured_window(champion, elec2_split["test"], "own", tmp_path)
    path = tmp_path / "other.csv"
    pd.DataFrame({"request_id": ["elsewhere"], "class": ["UP"]}).to_csv(path, index=False)
    fired, details = core.performance_decay(window, "class", champion["name"], 0.05, sqlite_tracking, labels=str(path))
    assert fired is None and "no captured row" in details["reason"] and details["labels_without_prediction"] == 1


def test_labels_without_the_key_or_a_window_without_predictions_are_named(
    champion, elec2_split, sqlite_tracking, tmp_path
):
    window, _ = captured_window(champion, elec2_split["test"], "own", tmp_path)
    path = tmp_path / "bad.csv"
    pd.DataFrame({"id": ["req-1"], "class": ["UP"]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"lacks column\(s\) 'request_id'"):
        core.performance_decay(window, "class", champion["name"], 0.05, sqlite_tracking, labels=str(path))
    with pytest.raises(ValueError, match="lacks 'request_id', 'prediction'"):
        core.performance_decay(elec2_split["test"], "class", champion["name"], 0.05, sqlite_tracking, labels=str(path))


def test_drift_on_captured_traffic_compares_the_models_input_columns(elec2_capture, elec2_split, tmp_path):
    """The capture against the training data: the input columns are tested; the request ids, times, answers and the
    training data's target are not (and a reference lacking an input column is named)."""
    result = core.detect_drift(elec2_split["train"], elec2_capture["path"], 0.5, exclude_columns=["class"])
    assert [c.column for c in result.columns] == elec2_capture["inputs"]
    inputs = datasets.open_dataset(elec2_split["train"]).read().drop_columns(["nswprice"])
    datasets.write_table(inputs, tmp_path / "less.parquet", "reference")
    with pytest.raises(ValueError, match="input columns the reference .* lacks: nswprice"):
        core.detect_drift(str(tmp_path / "less.parquet"), elec2_capture["path"], 0.5, exclude_columns=["class"])
