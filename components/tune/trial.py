"""One tuning trial: fit a catalog trainer's core with given hyperparameters and print its validation metrics as
`validation-<metric>=<value>` lines (the trainer prints its per-epoch lines itself).

Both backends run this code: the local backend calls `prepare` once (its worker processes share the memory-mapped
rows) and `run_trial` per trial in a worker; a Katib trial's Job runs it as a module:

    python -m kfp_ct.components.tune.trial --trainer sklearn --train-uri gs://b/train.parquet \\
        --featurizer-uri gs://b/featurizer --target-column class --task classification \\
        --option estimator=hist_gradient_boosting --param learning_rate=0.05 --param-type learning_rate=double \\
        --param max_leaf_nodes=31 --param-type max_leaf_nodes=int

The data is split into fit and validation rows exactly as the trainer does (`training.load_train_data`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Optional

import numpy as np

from kfp_ct.components.tune.space import parse_value

TRAINERS = {
    "sklearn": "kfp_ct.components.train_sklearn.core",
    "torch": "kfp_ct.components.train_torch.core",
    "keras": "kfp_ct.components.train_keras.core",
}
# Options of a trainer that are not hyperparameters but choose what the hyperparameters mean (passed to `fit`).
OPTIONS = {"sklearn": {"estimator": "hist_gradient_boosting"}, "torch": {}, "keras": {}}
METRIC_PREFIX = "validation-"


def trainer_core(trainer: str):
    if trainer not in TRAINERS:
        raise ValueError(f"unknown trainer '{trainer}': expected one of {', '.join(TRAINERS)}")
    return importlib.import_module(TRAINERS[trainer])


def preload_modules(trainer: str) -> list[str]:
    """What a trial worker needs imported: its fork server imports these once, while the parent loads the data."""
    return ["kfp_ct.components._common.training", TRAINERS[trainer]]


def trainer_options(trainer: str, options: Optional[dict] = None) -> dict:
    """The trainer's options (e.g. sklearn's estimator) completed with their defaults; unknown ones refused."""
    if trainer not in TRAINERS:
        raise ValueError(f"unknown trainer '{trainer}': expected one of {', '.join(TRAINERS)}")
    options = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = sorted(set(options) - set(OPTIONS[trainer]))
    if unknown:
        raise ValueError(
            f"unknown option(s) for trainer {trainer}: {', '.join(unknown)}; allowed: "
            f"{', '.join(OPTIONS[trainer]) or 'none'}"
        )
    return {**OPTIONS[trainer], **options}


@dataclass(frozen=True)
class Trainer:
    """A trainer with its options, checked (`check_trainer`), and the hyperparameters its core accepts (with their
    defaults), as the core itself reports them."""

    name: str
    options: dict
    allowed: dict

    def check_names(self, names) -> None:
        """Refuses hyperparameter names the trainer does not accept, listing the allowed ones."""
        unknown = sorted(set(names) - set(self.allowed))
        if unknown:
            what = (
                f"{self.name} ({', '.join(f'{k}={v}' for k, v in self.options.items())})" if self.options else self.name
            )
            raise ValueError(
                f"unknown hyperparameter(s) for {what}: {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(self.allowed))}"
            )


def check_trainer(trainer: str, options: Optional[dict] = None) -> Trainer:
    """The trainer, its options completed (`trainer_options`) and the hyperparameters its core accepts; the core
    refuses an unknown estimator by name."""
    options = trainer_options(trainer, options)
    core = trainer_core(trainer)
    if hasattr(core, "hyperparameters_for"):
        allowed = core.hyperparameters_for(**options)
    elif isinstance(getattr(core, "DEFAULTS", None), dict):
        allowed = core.DEFAULTS
    else:
        raise RuntimeError(f"trainer {trainer} ({TRAINERS[trainer]}) does not say which hyperparameters it accepts")
    return Trainer(trainer, options, dict(allowed))


@dataclass
class TrialContext:
    """What every trial of one search shares: the featurized fit and validation rows, loaded once.

    Its arrays may be memory-mapped .npy files (`prepare(share_dir=...)`): such an array pickles as its file name
    and unpickles as a copy-on-write map of the same file, so worker processes share the data's pages instead of
    each holding a copy."""

    trainer: str
    options: dict
    hyperparameters: dict
    seed: int
    task: str
    n_classes: Optional[int]
    x_fit: Any
    y_fit: Any
    x_val: Any
    y_val: Any

    ARRAYS: ClassVar[tuple[str, ...]] = ("x_fit", "y_fit", "x_val", "y_val")

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        for name in self.ARRAYS:
            if isinstance(state[name], np.memmap) and state[name].filename:
                state[name] = _MappedFile(state[name].filename)
        return state

    def __setstate__(self, state: dict) -> None:
        for name in self.ARRAYS:
            if isinstance(state[name], _MappedFile):
                state[name] = np.load(state[name].path, mmap_mode="c")
        self.__dict__.update(state)

    def shared(self, directory: str) -> TrialContext:
        """This context with its numeric arrays saved as .npy files in `directory` and memory-mapped."""
        arrays = {}
        for name in self.ARRAYS:
            array = getattr(self, name)
            if isinstance(array, np.ndarray) and array.dtype != object:
                path = os.path.join(directory, f"{name}.npy")
                np.save(path, array)
                array = np.load(path, mmap_mode="c")
            arrays[name] = array
        return replace(self, **arrays)


@dataclass(frozen=True)
class _MappedFile:
    path: str


def prepare(
    trainer: str,
    train_uri: str,
    featurizer_uri: str,
    target_column: Optional[str] = None,
    task: Optional[str] = None,
    options: Optional[dict] = None,
    hyperparameters: Optional[dict] = None,
    seed: int = 0,
    share_dir: Optional[str] = None,
) -> TrialContext:
    """Loads and featurizes the train split once, split into fit and validation rows as the trainer does; with
    `share_dir`, the rows are memory-mapped from files there, for worker processes to share (see TrialContext).
    `options` and the names of `hyperparameters` come checked (`check_trainer`)."""
    from kfp_ct.components._common.storage import local_copy
    from kfp_ct.components._common.training import load_train_data

    with local_copy(train_uri) as train_path, local_copy(featurizer_uri, directory=True) as feat:
        data = load_train_data(train_path, feat, seed, target_column, task)
    featurizer = data.featurizer
    context = TrialContext(
        trainer,
        options,
        dict(hyperparameters or {}),
        seed,
        featurizer.task,
        featurizer.n_classes,
        data.x_fit,
        data.y_fit,
        data.x_val,
        data.y_val,
    )
    return context.shared(share_dir) if share_dir else context


def run_trial(context: TrialContext, params: dict) -> dict[str, float]:
    """Fits the trainer with the fixed hyperparameters updated by `params`; prints and returns the validation
    metrics."""
    from kfp_ct.components._common.training import print_metrics, seed_everything

    core = trainer_core(context.trainer)
    seed_everything(context.seed)
    result = core.fit(
        context.x_fit,
        context.y_fit,
        context.x_val,
        context.y_val,
        task=context.task,
        n_classes=context.n_classes,
        hyperparameters={**context.hyperparameters, **params},
        seed=context.seed,
        **context.options,
    )
    metrics = {name.removeprefix(METRIC_PREFIX): float(value) for name, value in result.metrics.items()}
    print_metrics(metrics, prefix=METRIC_PREFIX)
    return metrics


def parse_assignments(items: list[str], what: str) -> dict[str, str]:
    """NAME=VALUE strings -> {NAME: VALUE}."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"{what} '{item}' must be NAME=VALUE")
        out[name] = value
    return out


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kfp_ct.components.tune.trial", description=__doc__.split("\n")[0])
    parser.add_argument("--trainer", required=True, choices=sorted(TRAINERS))
    parser.add_argument(
        "--train-uri", required=True, help="the train split: a Parquet file (path, file://, gs://, s3:// or minio://)"
    )
    parser.add_argument(
        "--featurizer-uri", required=True, help="the featurizer directory (path, file://, gs://, s3:// or minio://)"
    )
    parser.add_argument("--target-column")
    parser.add_argument("--task", choices=["classification", "regression"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--option", action="append", default=[], help="a trainer option NAME=VALUE (e.g. estimator)")
    parser.add_argument("--hyperparameters", default="{}", help="fixed hyperparameters as a JSON object")
    parser.add_argument("--param", action="append", default=[], help="a searched hyperparameter NAME=VALUE")
    parser.add_argument(
        "--param-type",
        action="append",
        default=[],
        help="NAME=TYPE: the Katib parameterType (double, int, categorical, discrete) of a --param; "
        "default categorical (JSON scalars as such, anything else as text)",
    )
    args = parser.parse_args(argv)
    fixed = json.loads(args.hyperparameters)
    if not isinstance(fixed, dict):
        parser.error("--hyperparameters must be a JSON object")
    options = parse_assignments(args.option, "--option")
    kinds = parse_assignments(args.param_type, "--param-type")
    params = {
        k: parse_value(kinds.get(k, "categorical"), v) for k, v in parse_assignments(args.param, "--param").items()
    }
    trainer = check_trainer(args.trainer, options)
    trainer.check_names([*params, *fixed])
    context = prepare(
        args.trainer,
        args.train_uri,
        args.featurizer_uri,
        args.target_column,
        args.task,
        trainer.options,
        fixed,
        args.seed,
    )
    run_trial(context, params)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
