"""The embedded default dataset: loan applications, generated in code so a fresh machine needs no download.

Three half-year periods of applications with a binary label `defaulted`:
- `2025H1`: the baseline the first model is trained on;
- `2025H2`: drift: applicants are younger, incomes, loan amounts, debt and open accounts grow, credit scores fall,
  contractors and the app channel take a larger share; and default now follows debt and the app channel more and
  the credit score less (concept drift), so the first model decays;
- `2026H1`: the same population and behaviour as 2025H2: no drift against a model trained on 2025H2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TARGET = "defaulted"
TIME_COLUMN = "application_date"
PERIODS = {
    "2025H1": {"start": "2025-01-01", "drift": False},
    "2025H2": {"start": "2025-07-01", "drift": True},
    "2026H1": {"start": "2026-01-01", "drift": True},
}
EMPLOYMENT = ["salaried", "self_employed", "contractor", "unemployed"]
CHANNEL = ["branch", "web", "app"]


def generate(period: str, rows: int = 20_000, seed: int = 0) -> pd.DataFrame:
    """One period of loan applications; deterministic for a given period, size and seed."""
    if period not in PERIODS:
        raise ValueError(f"unknown period '{period}': expected one of {', '.join(PERIODS)}")
    spec = PERIODS[period]
    drift = spec["drift"]
    rng = np.random.default_rng([seed, list(PERIODS).index(period)])
    start = pd.Timestamp(spec["start"])
    seconds = rng.integers(0, 181 * 24 * 3600, rows)
    application_date = (start + pd.to_timedelta(np.sort(seconds), unit="s")).strftime("%Y-%m-%dT%H:%M:%S")
    age = rng.integers(21, 60 if drift else 76, rows)
    income = rng.lognormal(np.log(52_000 * (1.3 if drift else 1.0)), 0.45, rows).round(2)
    loan_amount = (income * rng.uniform(0.05, 0.6 if drift else 0.45, rows)).round(2)
    employment = rng.choice(EMPLOYMENT, rows, p=[0.45, 0.2, 0.3, 0.05] if drift else [0.65, 0.2, 0.1, 0.05])
    channel = rng.choice(CHANNEL, rows, p=[0.1, 0.3, 0.6] if drift else [0.4, 0.4, 0.2])
    home = rng.choice(["rent", "mortgage", "own"], rows, p=[0.4, 0.4, 0.2])
    region = rng.choice(["north", "south", "east", "west"], rows)
    term = rng.choice(["36 months", "60 months"], rows, p=[0.7, 0.3])
    credit_score = np.clip(rng.normal(655 if drift else 680, 60, rows), 300, 850).round().astype(int)
    debt_to_income = np.clip(rng.gamma(2.0, 0.09 if drift else 0.08, rows), 0, 1.5).round(4)
    open_accounts = rng.poisson(7 if drift else 5, rows)

    logit = (
        -1.2
        - (0.004 if drift else 0.012) * (credit_score - 680)
        + (7.0 if drift else 2.5) * (debt_to_income - 0.17)
        + 1.2 * np.log(loan_amount / income / 0.25)
        + 0.6 * (term == "60 months")
        + np.select([employment == "unemployed", employment == "contractor"], [1.5, 1.1 if drift else 0.2], 0.0)
        + (1.0 if drift else 0.0) * (channel == "app")
        - (0.8 if drift else 0.0) * (home == "own")
        - 0.01 * (age - 45)
    )
    defaulted = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    income[rng.random(rows) < 0.02] = np.nan  # incomes some applicants did not state
    return pd.DataFrame(
        {
            TIME_COLUMN: application_date,
            "age": age,
            "annual_income": income,
            "loan_amount": loan_amount,
            "term": term,
            "employment": employment,
            "home_ownership": home,
            "region": region,
            "channel": channel,
            "credit_score": credit_score,
            "debt_to_income": debt_to_income,
            "open_accounts": open_accounts,
            TARGET: defaulted,
        }
    )


def write_sample_data(directory: str | Path, rows: int = 20_000, seed: int = 0) -> dict[str, str]:
    """Writes each period as `loans_<period>.csv` in `directory`; returns {period: path}."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for period in PERIODS:
        path = directory / f"loans_{period}.csv"
        generate(period, rows, seed).to_csv(path, index=False)
        paths[period] = str(path)
    return paths
