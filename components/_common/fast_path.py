"""The serving fast path of the catalog's scikit-learn models, beside the featurizer it mirrors, and its proof.

A model is served with its own featurizer and estimator (`TabularModel`'s scorer). For one request of a few rows,
most of that time is pandas and ColumnTransformer overhead (milliseconds a row), so `CompiledSklearn` computes the
same float32 features in numpy from the fitted featurizer's attributes (numeric columns: median impute, standard
scale; categorical columns: one-hot over `CategoryStrings`' text) and calls the same fitted estimator. It mirrors
exactly the structure `featurizer.build_transformer` builds from those parts; for any other structure (ordinal or
date/time columns, `impute_non_finite`, a structure changed since) `CompiledSklearn.build` returns None.

Mirroring by structure is not taken on trust. `prove` runs both on the WHOLE test split of the model (the split its
featurizer was fitted with) and records a proof only when the features and the scores are exactly equal: push
writes that proof (`PROOF_FILE`) into the version it publishes, and the server uses the fast path only for a model
that carries a proof made by this kfp-ct version for exactly these model files (`load`); every other model is
served by the model itself. A featurizer change the fast path does not mirror makes the proof fail (push then
publishes the model without one), never a silently different answer.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np

from kfp_ct.components._common.featurizer import MISSING

PROOF_FILE = "fast_path.json"
FORMAT = "kfp-ct.fast-path/v1"
_log = logging.getLogger(__name__)


class FastPathMismatch(ValueError):
    """The fast path's features or scores differ from the model's own on the test split."""


class CompiledSklearn:
    """Raw columns (numpy arrays as the server reads payloads, in the model's input order) -> the scores of the
    model's scikit-learn pipeline, computed in numpy. Only fitted attributes are read; nothing is refitted, nothing
    is loaded a second time."""

    def __init__(self, estimator, n_classes, numeric, one_hot, width):
        self.estimator = estimator
        self.n_classes = n_classes
        self.numeric = numeric  # (output offset, [input positions], statistics, mean, scale) or None
        self.one_hot = one_hot  # [(output offset, input position, {category: index})]
        self.width = width
        self.estimator_classes = np.asarray(estimator.classes_, dtype=np.int64) if n_classes is not None else None

    @classmethod
    def build(cls, model) -> CompiledSklearn | None:
        """The fast path of a loaded `TabularModel`, or None when its pipeline is not the structure mirrored here."""
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        from kfp_ct.components._common.featurizer import CategoryStrings, Float32

        pipeline = getattr(model.scorer, "pipeline", None)  # the sklearn adapter's Pipeline(featurizer, estimator)
        if model.framework != "sklearn" or pipeline is None or len(pipeline.steps) != 2:
            return None
        transformer = pipeline.steps[0][1]  # the featurizer the model itself runs
        if not isinstance(transformer, Pipeline) or len(transformer.steps) != 2:
            return None
        columns, last = (step for _, step in transformer.steps)
        if type(last) is not Float32 or not isinstance(columns, ColumnTransformer):
            return None
        position = {name: i for i, (name, _) in enumerate(model.input_columns)}
        numeric, one_hot, offset = None, [], 0
        for name, part, selected in columns.transformers_:
            if name == "remainder" and part == "drop":
                continue
            if not isinstance(part, Pipeline) or not all(isinstance(c, str) and c in position for c in selected):
                return None
            steps = [step for _, step in part.steps]
            kinds = [type(step) for step in steps]
            if kinds == [SimpleImputer, StandardScaler] and numeric is None:
                imputer, scaler = steps
                if imputer.strategy != "median" or imputer.add_indicator or len(imputer.statistics_) != len(selected):
                    return None
                mean = scaler.mean_ if scaler.with_mean else np.zeros(len(selected))
                scale = scaler.scale_ if scaler.with_std else np.ones(len(selected))
                numeric = (
                    offset,
                    [position[c] for c in selected],
                    np.asarray(imputer.statistics_, np.float64),
                    np.asarray(mean, np.float64),
                    np.asarray(scale, np.float64),
                )
                offset += len(selected)
            elif (
                kinds == [CategoryStrings, OneHotEncoder]
                and steps[1].drop is None
                and steps[1].handle_unknown == "ignore"
                and not getattr(steps[1], "_infrequent_enabled", False)
            ):
                for column, categories in zip(selected, steps[1].categories_):
                    lookup = {str(category): j for j, category in enumerate(categories.tolist())}
                    one_hot.append((offset, position[column], lookup))
                    offset += len(categories)
            else:
                return None
        return cls(pipeline.steps[-1][1], model.featurizer.n_classes, numeric, one_hot, offset)

    def features(self, columns: list[np.ndarray]) -> np.ndarray:
        """The float32 feature matrix (what the featurizer's transform gives)."""
        n = len(columns[0])
        x = np.zeros((n, self.width), dtype=np.float32)
        if self.numeric is not None:
            offset, positions, statistics, mean, scale = self.numeric
            block = np.column_stack([columns[p] for p in positions]).astype(np.float64, copy=False)
            block = np.where(np.isnan(block), statistics, block)
            x[:, offset : offset + len(positions)] = (block - mean) / scale
        for offset, position, lookup in self.one_hot:
            for row, value in enumerate(columns[position].tolist()):
                j = lookup.get(MISSING if value is None else value)
                if j is not None:
                    x[row, offset + j] = 1.0
        return x

    def __call__(self, columns: list[np.ndarray]) -> np.ndarray:
        """Probabilities (n, n_classes) or values (n,), as the model's scorer returns them."""
        x = self.features(columns)
        if self.n_classes is None:
            return np.asarray(self.estimator.predict(x), dtype=np.float64)
        out = np.zeros((len(x), self.n_classes), dtype=np.float64)
        out[:, self.estimator_classes] = self.estimator.predict_proba(x)
        return out


def server_columns(model, conformed) -> list[np.ndarray]:
    """The columns of a frame the model's `conform` gave, as the server hands them to a scorer: numbers as float64,
    text as objects (str or None), in the model's input order."""
    numeric = {column["name"]: column["kind"] == "numeric" for column in model.featurizer.feature_columns}
    return [
        conformed[name].to_numpy(dtype=np.float64) if numeric[name] else conformed[name].to_numpy(dtype=object)
        for name, _ in model.input_columns
    ]


def model_files(model_dir: str | os.PathLike) -> dict[str, str]:
    """sha256 of each file of the model folder that the proof vouches for (all but the proof and storage's marker)."""
    from kfp_ct.components._common.datasets import sha256_file
    from kfp_ct.components._common.storage import MARKER

    files = {}
    for root, dirs, names in os.walk(model_dir):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, model_dir).replace(os.sep, "/")
            if rel not in (PROOF_FILE, MARKER):
                files[rel] = sha256_file(full)
    return files


def prove(model, test_path: str | os.PathLike) -> dict | None:
    """The proof that the fast path of the loaded `model` gives exactly its own features and scores on every row
    of the test split at `test_path` (the split written with the model's featurizer); None when the model has no
    fast path. Raises FastPathMismatch naming the first differing row, ValueError for a split that is not the
    featurizer's test split."""
    import kfp_ct
    from kfp_ct.components._common import datasets
    from kfp_ct.components._common.featurizer import check_split
    from kfp_ct.components._common.model import conform

    compiled = CompiledSklearn.build(model)
    if compiled is None:
        return None
    check_split(model.featurizer, "test", test_path)
    frame = datasets.read_frame(test_path)
    model.featurizer.check_columns(frame, f"the test split {test_path}")
    if frame.empty:
        raise ValueError(f"the test split {test_path} has no rows: nothing to prove the fast path on")
    conformed = conform(model.featurizer, frame)
    columns = server_columns(model, conformed)
    for what, fast, own in (
        ("features", compiled.features(columns), model.scorer.pipeline.steps[0][1].transform(conformed)),
        ("scores", compiled(columns), np.asarray(model.scorer(conformed), dtype=np.float64)),
    ):
        own = np.asarray(own, dtype=fast.dtype)
        if fast.shape != own.shape:
            raise FastPathMismatch(f"the fast path's {what} have shape {fast.shape}, the model's {own.shape}")
        same = (fast == own) | (np.isnan(fast) & np.isnan(own))
        if not same.all():
            row = int(np.flatnonzero(~same.reshape(len(same), -1).all(axis=1))[0])
            raise FastPathMismatch(
                f"the fast path's {what} differ from the model's own on row {row} of {len(frame)} of the test split "
                f"{test_path}"
            )
    return {
        "format": FORMAT,
        "kfp_ct": kfp_ct.__version__,
        "test_rows": len(frame),
        "split_id": model.featurizer.extra.get("split_id"),
        "files": model_files(model.path),
    }


def write_proof(proof: dict, model_dir: str | os.PathLike) -> None:
    """Writes `proof` into the model folder `model_dir` (atomically)."""
    from kfp_ct.components._common.datasets import atomic_path

    with atomic_path(os.path.join(model_dir, PROOF_FILE)) as tmp, open(tmp, "w") as f:
        json.dump(proof, f, indent=1, sort_keys=True)


def load(model) -> CompiledSklearn | None:
    """The fast path of the loaded `model` when its folder carries a proof for exactly its files, made by this
    kfp-ct version; else None (the model serves itself), with a log line saying why."""
    import kfp_ct

    path = os.path.join(model.path, PROOF_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            proof = json.load(f)
    except (OSError, ValueError) as err:
        _log.warning("kfp-ct: fast path not used: %s is unreadable (%s)", path, err)
        return None
    if not isinstance(proof, dict) or proof.get("format") != FORMAT or proof.get("kfp_ct") != kfp_ct.__version__:
        _log.warning("kfp-ct: fast path not used: %s was not made by kfp-ct %s", path, kfp_ct.__version__)
        return None
    if proof.get("files") != model_files(model.path):
        _log.warning("kfp-ct: fast path not used: the model files differ from those %s vouches for", path)
        return None
    return CompiledSklearn.build(model)
