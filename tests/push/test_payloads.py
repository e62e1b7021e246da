"""Payload checks of the model server (no server needed): the numpy fast paths refuse what the slow paths refuse."""

from __future__ import annotations

import numpy as np
import pytest

from kfp_ct.components.push.server import Columns, PayloadError

NUMERIC = Columns([("a", "double"), ("b", "long")])
MIXED = Columns([("a", "double"), ("kind", "string"), ("when", "datetime")])


def test_all_numeric_rows_take_the_fast_path():
    a, b = NUMERIC.from_instances([[1, 2], [3.5, None]])
    assert a.dtype == np.float64 and a.tolist() == [1.0, 3.5]
    assert np.isnan(b[1]) and b[0] == 2.0


@pytest.mark.parametrize(
    "rows, message",
    [
        ([[1, True]], "column 'b' expects a number (long), got True (bool) in instance 0"),
        ([[1, 2], [False, 2]], "column 'a' expects a number (double), got False (bool) in instance 1"),
        ([[1, float("inf")]], "column 'b' holds an infinite value (inf) in instance 0"),
        ([[1, "2"]], "column 'b' expects a number (long), got '2' (str) in instance 0"),
        ([[1, [2]]], "column 'b' expects a number (long), got [2] (list) in instance 0"),
        ([[1, 2], [1, 2, 3]], "instance 1 has 3 values, expected 2"),
    ],
)
def test_numeric_rows_refused(rows, message):
    with pytest.raises(PayloadError) as err:
        NUMERIC.from_instances(rows)
    assert str(err.value).startswith(message), str(err.value)


def test_records_with_text_and_dates():
    a, kind, when = MIXED.from_instances(
        [{"a": 1, "kind": 7, "when": "2026-11-26T08:00:00"}, {"a": None, "kind": None, "when": None}]
    )
    assert kind.tolist() == ["7", None]  # text as the model's conform() makes it
    assert str(when[0]).startswith("2026-11-26T08:00") and np.isnat(when[1])
    with pytest.raises(PayloadError, match="column 'when' expects an ISO 8601 date/time, got 'soon' in instance 0"):
        MIXED.from_instances([{"a": 1, "kind": "x", "when": "soon"}])
    with pytest.raises(PayloadError, match="column 'kind' expects text"):
        MIXED.from_instances([{"a": 1, "kind": {"x": 1}, "when": None}])


def test_batch_size_limits():
    with pytest.raises(PayloadError, match="empty"):
        NUMERIC.from_instances([])
    with pytest.raises(PayloadError, match="more than the 100000"):
        NUMERIC.from_instances([[1, 2]] * 100_001)
