"""evaluate's sliced and fairness gates, on elec2: a candidate better overall but worse on one segment of the rows.

The champion is a logistic regression trained on the train split. The candidate is a gradient-boosted model (much
better overall) trained on the same rows except that the labels of the Wednesday rows (`day` 3) are shuffled: on
that slice it is worse than the champion, and it treats that day's rows differently from the others.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kfp_ct.components._common import datasets, tracking
from kfp_ct.components.evaluate import core as ev
from kfp_ct.components.evaluate import slices as sl
from kfp_ct.components.train_sklearn import core as sk

CORRUPTED_DAY = 3
PER_SLICE_AUC = {"roc_auc": {"max_drop": 0.02, "per_slice": True}}


@pytest.fixture(scope="module")
def gate(elec2_split, sqlite_tracking, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slices")
    name = "slices-elec2"
    train = datasets.read_frame(elec2_split["train"])
    rows = train["day"] == CORRUPTED_DAY
    train.loc[rows, "class"] = np.random.default_rng(0).permutation(train.loc[rows, "class"].to_numpy())
    datasets.write_frame(train, tmp / "corrupted.parquet", "elec2 with day 3's labels shuffled")
    common = {"featurizer_path": elec2_split["featurizer"], "model_name": name, "tracking_uri": sqlite_tracking}
    champion = sk.train_sklearn(
        train_path=elec2_split["train"], model_path=str(tmp / "champion"), estimator="logistic_regression", **common
    )
    candidate = sk.train_sklearn(
        train_path=str(tmp / "corrupted.parquet"),
        model_path=str(tmp / "candidate"),
        estimator="hist_gradient_boosting",
        hyperparameters={"max_iter": 100},
        **common,
    )
    tracking.promote(name, champion.version, tracking_uri=sqlite_tracking)
    return {
        "name": name,
        "uri": sqlite_tracking,
        "test": elec2_split["test"],
        "champion": champion,
        "candidate": candidate,
    }


def run(gate, model="candidate", **kwargs):
    return ev.evaluate(
        model_path=gate[model].model_path,
        test_path=gate["test"],
        target_column="class",
        model_name=gate["name"],
        tracking_uri=gate["uri"],
        **kwargs,
    )


def challenger(gate):
    return tracking.get_alias(gate["name"], tracking.CHALLENGER, gate["uri"])


def test_better_overall_but_worse_on_one_slice_is_not_blessed_and_the_slice_is_named(gate):
    before = challenger(gate)
    result = run(gate, thresholds=PER_SLICE_AUC, slices=["day", "nswprice"])
    assert result.candidate.metrics["roc_auc"] > result.champion.metrics["roc_auc"] + 0.05  # better overall
    assert not result.blessed and result.verdict.failed_slices == [f"day={CORRUPTED_DAY}"]
    assert result.verdict.reasons[0] == f"FAIL on 1 slice(s): day={CORRUPTED_DAY}"
    assert result.metadata["failed_slices"] == [f"day={CORRUPTED_DAY}"] and result.metrics["failed_slices"] == 1.0
    assert challenger(gate) == before  # nothing blessed, the alias stays where it was
    # every day is a slice; nswprice (a price, many values) is cut into 4 quantile bins covering every row
    day = [piece for piece in result.slices if piece.column == "day"]
    price = [piece for piece in result.slices if piece.column == "nswprice"]
    assert [piece.value for piece in day] == [str(d) for d in range(1, 8)]
    test = datasets.read_frame(gate["test"])
    assert len(price) == 4 and sum(piece.rows for piece in price) == len(test)
    assert price[0].value.startswith("[") and price[-1].value.endswith("]")
    bad = next(piece for piece in day if piece.value == str(CORRUPTED_DAY))
    assert bad.candidate["roc_auc"] < bad.champion["roc_auc"] - 0.1
    assert bad.rows == int((test["day"] == CORRUPTED_DAY).sum())
    # the slice metrics are those of the slice's own rows, scored alone
    from kfp_ct.components._common.metrics import score
    from kfp_ct.components._common.model import load_model

    alone = score(load_model(gate["candidate"].model_path), test[test["day"] == CORRUPTED_DAY], "class")
    assert bad.candidate == pytest.approx(alone, abs=1e-12)
    # the KFP metrics and the model card
    assert result.metrics[f"slice_day_{CORRUPTED_DAY}_roc_auc"] == bad.candidate["roc_auc"]
    assert result.metrics[f"slice_day_{CORRUPTED_DAY}_rows"] == bad.rows
    assert all(name.replace("_", "").isalnum() for name in result.metrics)
    assert f"**Verdict: NOT BLESSED**; failed slices: `day={CORRUPTED_DAY}`" in result.card
    assert "### `day`" in result.card and "### `nswprice`" in result.card
    figures = f"{bad.candidate['roc_auc']:.4f} | {bad.champion['roc_auc']:.4f}"
    assert f"| {CORRUPTED_DAY} | {bad.rows} | {figures} | FAIL (roc_auc) |" in result.card
    # the same thresholds on the whole split only: blessed (the slice gate is what catches it)
    whole = run(gate, thresholds={"roc_auc": {"max_drop": 0.02}}, slices=["day"])
    assert whole.blessed and not whole.verdict.failed_slices
    assert "No per-slice thresholds: the slices are shown, not judged." in whole.card
    assert challenger(gate) == gate["candidate"].version


def test_a_filter_is_one_slice_and_slices_too_small_are_skipped_and_said(gate):
    result = run(gate, thresholds=PER_SLICE_AUC, slices=[f"day={CORRUPTED_DAY}", "day=1"])
    assert not result.blessed and result.verdict.failed_slices == [f"day={CORRUPTED_DAY}"]
    assert [piece.name for piece in result.slices] == [f"day={CORRUPTED_DAY}", "day=1"]
    small = run(gate, thresholds=PER_SLICE_AUC, slices=["day"], min_slice_rows=1000)
    assert small.blessed and not small.verdict.failed_slices
    rows = next(piece.rows for piece in small.slices if piece.value == str(CORRUPTED_DAY))
    assert f"SKIP slice day={CORRUPTED_DAY}: skipped: {rows} rows < min_slice_rows 1000" in small.verdict.reasons
    assert f"| skipped: {rows} rows < min_slice_rows 1000 |" in small.card
    # a filter matching no row is a slice of 0 rows: skipped, said
    empty = run(gate, thresholds=PER_SLICE_AUC, slices=["day=9"])
    assert empty.blessed and "SKIP slice day=9: skipped: 0 rows < min_slice_rows 100" in empty.verdict.reasons


def test_fairness_gate_fails_the_candidate_that_treats_one_day_differently_and_passes_the_champion(gate):
    thresholds = {"equalized_odds_difference": {"max": 0.4}}
    result = run(gate, thresholds=thresholds, sensitive_columns=["day", "period"])
    figures = result.fairness["day"]["candidate"]
    assert figures["equalized_odds_difference"] > 0.4 and not result.blessed
    assert result.candidate.metrics["equalized_odds_difference"] == max(
        result.fairness[column]["candidate"]["equalized_odds_difference"] for column in ("day", "period")
    )
    assert any(r.startswith("FAIL equalized_odds_difference =") for r in result.verdict.reasons)
    assert result.metrics["fairness_day_equalized_odds_difference"] == figures["equalized_odds_difference"]
    assert "## Fairness" in result.card and "| `day` | 7 |" in result.card and "positive class `UP`" in result.card
    honest = run(gate, model="champion", thresholds=thresholds, sensitive_columns=["day"])
    assert honest.blessed, honest.verdict.reasons
    assert honest.candidate.metrics["equalized_odds_difference"] <= 0.4
    # relative to the champion: the candidate's gap grew
    relative = run(gate, thresholds={"equalized_odds_difference": {"max_increase": 0.05}}, sensitive_columns=["day"])
    assert not relative.blessed and "FAIL equalized_odds_difference increase vs champion" in relative.verdict.reasons[0]


def test_fairness_figures_are_fairlearns_on_the_raw_rows():
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    rng = np.random.default_rng(1)
    n = 3000
    groups = pd.Series(rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]))
    y = rng.integers(0, 2, n)
    p_up = np.clip(0.3 + 0.4 * y + 0.1 * (groups == "c").to_numpy() + rng.normal(0, 0.2, n), 0, 1)
    proba = np.column_stack([1 - p_up, p_up])
    got = sl.fairness(y, proba, sl.group(groups, sl.SliceSpec("g")))
    predicted = (p_up > 0.5).astype(int)
    assert got["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(y, predicted, sensitive_features=groups), abs=1e-12
    )
    assert got["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(y, predicted, sensitive_features=groups), abs=1e-12
    )


def test_grouping_values_bins_and_missing():
    values = pd.Series([1.0, 2.0, None, *range(3, 100)])
    grouping = sl.group(values, sl.SliceSpec("x"))
    assert len(grouping.labels) == 5 and grouping.labels[-1] == "missing" and grouping.codes[2] == 4
    assert np.bincount(grouping.codes)[:4].tolist() == [25, 24, 25, 25]
    few = sl.group(pd.Series(["b", "a", None, "b"]), sl.SliceSpec("c"))
    assert few.labels == ["a", "b", "missing"] and few.codes.tolist() == [1, 0, 2, 1]
    when = sl.group(pd.Series(pd.date_range("2026-01-01", periods=100, freq="D")), sl.SliceSpec("t"))
    assert when.labels[0] == "[2026-01-01 00:00:00, 2026-01-25 18:00:00)" and len(when.labels) == 4
    with pytest.raises(ValueError, match="'id' has 150 distinct values, more than 100 slices"):
        sl.group(pd.Series([f"row{i}" for i in range(150)]), sl.SliceSpec("id"))
    flags = sl.group(pd.Series([True, False, True]), sl.SliceSpec("f", "true"))
    assert flags.codes.tolist() == [0, -1, 0]
    assert sl.metric_name("slice", "nswprice", "[0.04, 0.07)", "roc_auc") == "slice_nswprice_0_04_0_07_roc_auc"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"slices": ["weekday"]}, "slices: 'weekday' names the column 'weekday', which is not in the test split"),
        ({"slices": ["day="]}, "slices: 'day=' is not a column name or a 'column=value' filter"),
        ({"slices": ["=3"]}, "slices: '=3' is not a column name or a 'column=value' filter"),
        ({"slices": "day"}, "slices must be a list"),
        ({"slices": ["day", "day"]}, "slices: 'day' is given twice"),
        ({"slices": ["nswprice=cheap"]}, "slice 'nswprice=cheap': 'nswprice' is numeric; 'cheap' is not a number"),
        ({"thresholds": PER_SLICE_AUC}, "thresholds on roc_auc are per_slice, but no slices are given"),
        ({"thresholds": {"equalized_odds_difference": {"max": 0.1}}}, "need sensitive_columns"),
        ({"sensitive_columns": ["day=3"]}, "sensitive_columns name columns, not filters: day=3"),
        ({"sensitive_columns": ["region"]}, "sensitive_columns: 'region' names the column 'region'"),
        ({"slices": ["day"], "min_slice_rows": 0}, "min_slice_rows must be a whole number >= 1"),
        (
            {"thresholds": {"equalized_odds_difference": {"max": 0.1, "per_slice": True}}},
            "compares the groups of a sensitive column with each other",
        ),
        ({"thresholds": {"roc_auc": {"min": 0.5, "per_slice": "yes"}}}, "'per_slice'\\] must be true or false"),
        ({"thresholds": {"roc_auc": {"per_slice": True}}}, "must be a dict such as"),
    ],
)
def test_bad_slice_and_fairness_parameters_are_named_and_bless_nothing(gate, kwargs, message):
    before = challenger(gate)
    with pytest.raises(ValueError, match=message):
        run(gate, **kwargs)
    assert challenger(gate) == before


def test_fairness_needs_a_binary_classifier(bike_split, sqlite_tracking, model_name, tmp_path):
    model = sk.train_sklearn(
        train_path=bike_split["train"],
        featurizer_path=bike_split["featurizer"],
        model_path=str(tmp_path / "m"),
        model_name=model_name,
        estimator="linear_regression",
        tracking_uri=sqlite_tracking,
    )
    with pytest.raises(ValueError, match="need a binary classification model; this one is a regression model"):
        ev.evaluate(
            model_path=model.model_path,
            test_path=bike_split["test"],
            target_column="cnt",
            model_name=model_name,
            tracking_uri=sqlite_tracking,
            sensitive_columns=["season"],
        )
    result = ev.evaluate(  # regression slices: rmse per season
        model_path=model.model_path,
        test_path=bike_split["test"],
        target_column="cnt",
        model_name=model_name,
        tracking_uri=sqlite_tracking,
        thresholds={"rmse": {"max": 1e6, "per_slice": True}},
        slices=["season"],
        min_slice_rows=1,
    )
    assert result.blessed and {piece.name for piece in result.slices} <= {f"season={s}" for s in range(1, 5)}
    assert all(set(piece.candidate) == {"rmse", "mae", "r2", "mape"} for piece in result.slices)
