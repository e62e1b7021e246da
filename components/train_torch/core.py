"""PyTorch trainer: a tabular MLP (Linear, ReLU, Dropout blocks) fitted on featurized rows.

On CUDA the whole dataset lives on the device as tensors: batches are gathered by an index permutation drawn on
the device (no DataLoader, no per-batch host copies), the forward pass runs under bf16 autocast, and AdamW uses its
fused kernel. On CPU the same code runs in float32, on as many threads as the pod's CPU limit allows. Early
stopping keeps the state dict of the epoch with the lowest validation loss. Classification minimises cross-entropy
(class-weighted, 'balanced' by default); regression minimises MSE on a standardised target, and the scaling is
folded into the last layer after training, so the saved network predicts the target in its own units.

Each epoch prints one `name=value` line per metric, read by Katib's default StdOut metrics collector (filter
`([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)`): `epoch`, `loss` (training, weighted), `validation-loss`
(unweighted), then `validation-accuracy` and `validation-roc_auc`, or `validation-rmse`, `validation-mae` and
`validation-r2` (in the target's units). The metrics are computed on the device and read in one transfer per epoch.
The fitted network is saved through `TorchAdapter` as data: its state dict, read back with
`torch.load(weights_only=True)`, and its architecture in JSON.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from kfp_ct.components._common.training import MAX_CLASSES

TASKS = ("classification", "regression")
ESTIMATOR = "mlp"

DEFAULTS: dict[str, Any] = {
    "hidden_sizes": (256, 256),
    "dropout": 0.1,
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "batch_size": None,  # None: chosen from the row count and the device (see auto_batch_size)
    "epochs": 100,
    "patience": 10,
    "class_weight": "balanced",
    "compile": False,
}
MAX_BATCH = {"cuda": 8192, "cpu": 1024}
EVAL_BATCH = 65536
# Katib's default StdOut filter: ([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)
METRIC_FORMAT = ".8g"


# ----------------------------------------------------------------------------------------------------------------
# Hyperparameters


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise ValueError(f"hyperparameter '{name}' must be true or false, got {value!r}")


def _as_number(name: str, value: Any, kind: type, low: float, high: float = math.inf, low_open: bool = False):
    try:
        number = kind(float(value)) if kind is int and not isinstance(value, bool) else kind(value)
        if kind is int and float(value) != number:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(
            f"hyperparameter '{name}' must be {'an integer' if kind is int else 'a number'}, got {value!r}"
        ) from None
    if not (low < number if low_open else low <= number) or number > high or not math.isfinite(number):
        bounds = f"{'(' if low_open else '['}{low}, {high}]"
        raise ValueError(f"hyperparameter '{name}' must lie in {bounds}, got {value!r}")
    return number


def _as_sizes(name: str, value: Any) -> list[int]:
    if isinstance(value, str):
        parts = [p for p in value.replace("[", "").replace("]", "").replace(" ", "").split(",") if p]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        parts = [value]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = None
    if not parts:
        raise ValueError(
            f"hyperparameter '{name}' must be a non-empty list of layer widths such as [256, 256] or "
            f"'256,256', got {value!r}"
        )
    return [_as_number(name, p, int, 1) for p in parts]


def resolve_hyperparameters(
    given: dict | None, defaults: dict[str, Any] = DEFAULTS, what: str = ESTIMATOR
) -> dict[str, Any]:
    """The defaults updated with `given`, each value checked and converted (Katib passes numbers as text).

    Raises:
        ValueError: a name that is not a hyperparameter of this trainer (the message lists the allowed ones), or a
            value of the wrong type or range.
    """
    from kfp_ct.components._common.training import check_hyperparameters

    hp = check_hyperparameters(given, defaults, what)
    checked = {
        "hidden_sizes": _as_sizes("hidden_sizes", hp["hidden_sizes"]),
        "dropout": _as_number("dropout", hp["dropout"], float, 0.0, 0.95),
        "lr": _as_number("lr", hp["lr"], float, 0.0, 10.0, low_open=True),
        "weight_decay": _as_number("weight_decay", hp["weight_decay"], float, 0.0, 10.0),
        "batch_size": None
        if hp["batch_size"] in (None, "", "auto")
        else _as_number("batch_size", hp["batch_size"], int, 1),
        "epochs": _as_number("epochs", hp["epochs"], int, 1),
        "patience": _as_number("patience", hp["patience"], int, 1),
        "class_weight": str(hp["class_weight"] if hp["class_weight"] is not None else "none").lower(),
    }
    if checked["class_weight"] not in ("balanced", "none"):
        raise ValueError(f"hyperparameter 'class_weight' must be 'balanced' or 'none', got {hp['class_weight']!r}")
    for name in set(defaults) - set(checked):
        checked[name] = _as_bool(name, hp[name]) if isinstance(defaults[name], bool) else hp[name]
    return checked


def auto_batch_size(n_rows: int, device_type: str) -> int:
    """A power of two near an eighth of the rows (at least 8 steps an epoch), between 64 and 8192 on CUDA (1024 on
    CPU): large batches keep a GPU busy, and small data still gets enough steps."""
    cap = MAX_BATCH.get(device_type, MAX_BATCH["cpu"])
    return int(min(cap, max(64, 2 ** math.floor(math.log2(max(n_rows, 8) / 8)))))


# ----------------------------------------------------------------------------------------------------------------
# Inputs and the per-epoch lines (shared with the Keras trainer)


def as_matrix(X, what: str = "features") -> np.ndarray:
    """A dense float32 matrix of `X` (an array, a DataFrame or a scipy sparse matrix), with an error naming the
    problem when it is not numeric or holds NaN or infinity."""
    if hasattr(X, "toarray"):
        X = X.toarray()
    try:
        matrix = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"the {what} must be numeric (the featurizer's output), got {err}") from None
    if matrix.ndim != 2:
        raise ValueError(f"the {what} must be a 2-D matrix (rows x features), got shape {matrix.shape}")
    if matrix.shape[0] == 0:
        raise ValueError(f"the {what} have no rows")
    finite = np.isfinite(matrix)
    if not finite.all():
        columns = np.flatnonzero(~finite.all(axis=0))
        raise ValueError(
            f"the {what} hold NaN or infinity in column(s) {', '.join(map(str, columns[:10]))} of "
            f"{matrix.shape[1]}: impute them in the featurizer"
        )
    return matrix


def check_inputs(x_train, y_train, x_val, y_val, task: str, n_classes: int | None):
    """(x_train, y_train, x_val, y_val) as float32 matrices and int64 class indices (classification) or float32
    values (regression), checked against each other."""
    if task not in TASKS:
        raise ValueError(f"unknown task '{task}': expected one of {', '.join(TASKS)}")
    x_train, x_val = as_matrix(x_train, "training features"), as_matrix(x_val, "validation features")
    if x_val.shape[1] != x_train.shape[1]:
        raise ValueError(f"validation features have {x_val.shape[1]} columns, training features {x_train.shape[1]}")
    targets = []
    for what, x, y in (("training", x_train, y_train), ("validation", x_val, y_val)):
        y = np.asarray(y).reshape(-1)
        if len(y) != len(x):
            raise ValueError(f"the {what} features have {len(x)} rows but the {what} target has {len(y)}")
        if task == "classification":
            if n_classes is None or n_classes < 2:
                raise ValueError(f"classification needs n_classes >= 2, got {n_classes}")
            if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes:
                raise ValueError(
                    f"the {what} target must hold class indices 0..{n_classes - 1} (the featurizer's "
                    f"encoding), got values such as {np.unique(y)[:5].tolist()}"
                )
            targets.append(y.astype(np.int64))
        else:
            try:
                values = y.astype(np.float32)
            except (TypeError, ValueError):
                raise ValueError(f"the {what} target of a regression must be numeric") from None
            if not np.isfinite(values).all():
                raise ValueError(f"the {what} target holds NaN or infinity")
            targets.append(values)
    return x_train, targets[0], x_val, targets[1]


def class_weights(codes: np.ndarray, n_classes: int, mode: str) -> np.ndarray | None:
    """'balanced': n_rows / (n_classes * rows of the class) (1 for a class absent from training); 'none': None."""
    if mode == "none":
        return None
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, len(codes) / (n_classes * np.maximum(counts, 1)), 1.0)
    return weights.astype(np.float32)


def target_scaling(y: np.ndarray) -> tuple[float, float]:
    """(mean, std) that standardise a regression target (std 1 for a constant target)."""
    std = float(np.std(y, dtype=np.float64))
    return float(np.mean(y, dtype=np.float64)), std if std > 0 else 1.0


def format_metric(name: str, value: float) -> str | None:
    """`name=value` in a form Katib's default filter parses; None for a value that is not finite."""
    value = float(value)
    if not math.isfinite(value):
        return None
    text = str(int(value)) if value.is_integer() and abs(value) < 1e15 else format(value, METRIC_FORMAT)
    return f"{name}={text}"


def print_metrics(metrics: dict[str, float], log: Callable[[str], None]) -> None:
    """One `name=value` line per finite metric."""
    for name, value in metrics.items():
        line = format_metric(name, value)
        if line is not None:
            log(line)


def default_log(line: str) -> None:
    print(line, flush=True)


# ----------------------------------------------------------------------------------------------------------------
# The fitted model and its adapter (kfp_ct.components._common.model)


class TorchTabularModel:
    """A fitted MLP. `network` is a plain `torch.nn.Sequential` on the CPU, in float32, whose output is the logits
    (classification) or the target in its own units (regression)."""

    def __init__(self, network, task: str, n_features: int, best_epoch: int = 0, device: str = "cpu"):
        self.network = network
        self.task = task
        self.n_features_in_ = n_features
        self.best_epoch = best_epoch  # the epoch whose weights early stopping kept
        self.device = device  # where it was trained

    def scores(self, x) -> np.ndarray:
        """Class probabilities (n, n_classes) for classification, values (n,) for regression."""

        matrix = as_matrix(x)
        if matrix.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} features, got {matrix.shape[1]}")
        self.network.eval()
        return outputs_to_scores(network_outputs(self.network, matrix), self.task)


def network_outputs(network, matrix: np.ndarray) -> np.ndarray:
    """The float32 outputs of a CPU network over a matrix, in bounded batches."""
    import torch

    with torch.inference_mode():
        return np.concatenate(
            [
                network(torch.from_numpy(matrix[s : s + EVAL_BATCH])).float().numpy()
                for s in range(0, len(matrix), EVAL_BATCH)
            ]
        )


def outputs_to_scores(outputs: np.ndarray, task: str) -> np.ndarray:
    """Logits -> probabilities (classification); the single output column -> values (regression)."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if task == "regression":
        return outputs[:, 0]
    shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


WEIGHTS_FILE = "data/weights.pt"  # the network's state dict, torch.save'd: tensors only
NETWORK_FILE = "data/network.json"  # its architecture: build_network's arguments


def network_spec(network) -> dict:
    """build_network's arguments for a network it built (what NETWORK_FILE holds)."""
    import torch.nn as nn

    linears = [layer for layer in network if isinstance(layer, nn.Linear)]
    dropouts = [layer.p for layer in network if isinstance(layer, nn.Dropout)]
    return {
        "n_features": linears[0].in_features,
        "n_outputs": linears[-1].out_features,
        "hidden_sizes": [layer.out_features for layer in linears[:-1]],
        "dropout": float(dropouts[0]) if dropouts else 0.0,
    }


def network_from(spec: dict, state: dict, what: str):
    """The eval-mode network of `spec` (build_network's arguments) with the weights `state`; built on the meta
    device first, so a spec that does not match the weights fails before anything is allocated."""
    import torch

    try:
        sizes = [_as_number("hidden_sizes", size, int, 1) for size in spec["hidden_sizes"]]
        args = (
            _as_number("n_features", spec["n_features"], int, 1),
            _as_number("n_outputs", spec["n_outputs"], int, 1),
            sizes,
            _as_number("dropout", spec["dropout"], float, 0.0, 0.95),
        )
        with torch.device("meta"):
            network = build_network(*args)
        network.load_state_dict(state, strict=True, assign=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{what}: the architecture does not match the weights: {type(err).__name__}: {err}") from None
    return network.float().eval()


class TorchAdapter:
    """Saves the network as data: its state dict (`WEIGHTS_FILE`, loaded with torch.load(weights_only=True)) and its
    architecture (`NETWORK_FILE`, build_network's arguments in JSON); scores raw rows: featurizer, network, softmax
    for classification."""

    framework = "torch"
    libraries = ("torch",)

    def save(self, estimator: TorchTabularModel, featurizer, path: str, mlflow_model) -> None:
        import json
        import os

        import torch

        from kfp_ct.components._common.model import pip_requirements

        network = estimator.network.float().cpu().eval()
        spec = network_spec(network)
        state = {name: tensor.detach().clone() for name, tensor in network.state_dict().items()}
        network_from(spec, state, "the fitted network")  # what load will rebuild: the same architecture
        os.makedirs(os.path.join(path, "data"), exist_ok=True)
        torch.save(state, os.path.join(path, WEIGHTS_FILE))
        with open(os.path.join(path, NETWORK_FILE), "w") as f:
            json.dump(spec, f)
        with open(os.path.join(path, "requirements.txt"), "w") as f:
            f.write("\n".join(pip_requirements(self.libraries)) + "\n")

    def load(self, path: str, featurizer):
        import json
        import os

        from kfp_ct.components._common.model import load_torch_weights

        spec_file = os.path.join(path, NETWORK_FILE)
        if not os.path.isfile(spec_file) and os.path.isfile(os.path.join(path, "data", "model.pt2")):
            raise ValueError(
                f"{os.path.join(path, 'data', 'model.pt2')}: a torch.export program (written by an earlier kfp-ct) "
                "is not loaded; retrain the model to save its weights and architecture as data"
            )
        state = load_torch_weights(os.path.join(path, WEIGHTS_FILE))
        try:
            with open(spec_file) as f:
                spec = json.load(f)
        except (OSError, ValueError) as err:
            raise ValueError(f"{spec_file} is not readable JSON: {err}") from None
        if not isinstance(spec, dict):
            raise ValueError(f"{spec_file} must hold a JSON object, got {type(spec).__name__}")
        network = network_from(spec, state, spec_file)
        task = featurizer.task

        def score(frame):
            return outputs_to_scores(network_outputs(network, featurizer.transform(frame)), task)

        return score


# ----------------------------------------------------------------------------------------------------------------
# Training


def build_network(n_features: int, n_outputs: int, hidden_sizes: list[int], dropout: float):
    import torch.nn as nn

    layers: list[nn.Module] = []
    width = n_features
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)


def make_optimizer(parameters, lr: float, weight_decay: float, device_type: str):
    """AdamW with the fused kernel on CUDA (one kernel for every parameter); the default implementation on CPU."""
    import torch

    if device_type == "cuda":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay, fused=True)
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)


def autocast_context(device_type: str):
    """bf16 autocast on CUDA; nothing (float32) elsewhere."""
    import torch

    if device_type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def pick_device(device: str | None = None):
    """The torch device: `device` when given ('cuda', 'cuda:1', 'cpu'), else CUDA when present, else CPU."""
    import torch

    resolved = torch.device(device if device is not None else "cuda" if torch.cuda.is_available() else "cpu")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device '{device}' was asked for but CUDA is not available")
        if resolved.index is None:  # an explicit index: generators and tensors then name the same device
            resolved = torch.device("cuda", torch.cuda.current_device())
    return resolved


def maybe_compile(network, example):
    """torch.compile'd network, or the network itself when compilation fails on this machine (no compiler, an
    unsupported backend): tried once on an example batch, so a failure surfaces here and not mid-training."""
    import torch

    try:
        compiled = torch.compile(network)
        with torch.no_grad():
            compiled(example)
        return compiled
    except Exception as err:  # noqa: BLE001 - any backend failure means: run eager
        warnings.warn(f"torch.compile failed, training without it: {type(err).__name__}: {err}", stacklevel=2)
        return network


def roc_auc_tensor(scores, positives):
    """Area under the ROC curve of `scores` for the boolean `positives`, on the device, with average ranks for ties
    (the Mann-Whitney statistic, equal to sklearn's roc_auc_score); NaN when a class is absent."""
    import torch

    n_pos = positives.sum().double()
    n_neg = positives.numel() - n_pos
    ordered, order = torch.sort(scores.double())
    _, inverse, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    ranks = (ends - (counts.double() - 1) / 2)[inverse]
    rank_sum = (ranks * positives[order].double()).sum()
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def epoch_metrics(outputs, target, task: str, target_std: float) -> dict:
    """One epoch's validation metrics as device tensors (the caller reads them in one transfer).

    validation-loss is the plain (unweighted) cross-entropy, or the MSE of the standardised target, whatever the
    class weights, so trials with and without class weights stay comparable. roc_auc is one-vs-rest weighted by
    class prevalence for more than two classes, as the final validation metrics.
    """
    import torch
    import torch.nn.functional as F

    if task == "classification":
        metrics = {
            "validation-loss": F.cross_entropy(outputs, target),
            "validation-accuracy": (outputs.argmax(dim=1) == target).double().mean(),
        }
        probabilities = torch.softmax(outputs.double(), dim=1)
        if outputs.shape[1] == 2:
            metrics["validation-roc_auc"] = roc_auc_tensor(probabilities[:, 1], target == 1)
        else:
            prevalence = torch.bincount(target, minlength=outputs.shape[1]).double() / target.numel()
            aucs = torch.stack([roc_auc_tensor(probabilities[:, k], target == k) for k in range(outputs.shape[1])])
            metrics["validation-roc_auc"] = (aucs.nan_to_num() * prevalence).sum()
        return metrics
    error = (outputs[:, 0].double() - target[:, 0].double()) * target_std
    centred = (target[:, 0].double() - target[:, 0].double().mean()) * target_std
    return {
        "validation-loss": F.mse_loss(outputs, target),
        "validation-rmse": error.square().mean().sqrt(),
        "validation-mae": error.abs().mean(),
        "validation-r2": 1 - error.square().sum() / centred.square().sum(),
    }


def evaluate(network, X, device_type: str):
    """Float32 outputs for device-resident rows, in eval mode, in bounded batches."""
    import torch

    network.eval()
    with torch.no_grad(), autocast_context(device_type):
        return torch.cat([network(X[s : s + EVAL_BATCH]).float() for s in range(0, X.shape[0], EVAL_BATCH)])


def train_epoch(network, optimizer, criterion, X, y, batch_size: int, generator, device_type: str):
    """One pass over the device-resident rows in a random order drawn on the device; returns the mean training
    loss as a device tensor, so the loop never waits for the device."""
    import torch

    network.train()
    n_rows = X.shape[0]
    permutation = torch.randperm(n_rows, device=X.device, generator=generator)
    total = torch.zeros((), device=X.device)
    for start in range(0, n_rows, batch_size):
        index = permutation[start : start + batch_size]
        with autocast_context(device_type):
            outputs = network(X.index_select(0, index))
        loss = criterion(outputs.float(), y.index_select(0, index))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total.add_(loss.detach(), alpha=index.numel())  # one kernel, no wait
    return total / n_rows


def fit(
    x_train,
    y_train,
    x_val,
    y_val,
    task: str,
    n_classes: int | None,
    hyperparameters: dict | None = None,
    seed: int = 0,
    device: str | None = None,
    log: Callable[[str], None] = default_log,
):
    """Fits the MLP (the trainer contract of kfp_ct.components._common.training) and scores the validation rows.

    Args:
        x_train: Training features (float32 matrix, the featurizer's output).
        y_train: Class indices 0..n_classes-1 (classification) or values (regression).
        x_val: Validation features, for early stopping and the metrics.
        y_val: Validation target.
        task: classification or regression.
        n_classes: Number of classes (None for regression).
        hyperparameters: Overrides of DEFAULTS; unknown names raise ValueError.
        seed: Seeds weight init, batch order and dropout (same seed, same metrics on CPU).
        device: 'cuda', 'cpu' or None (CUDA when present).
        log: Receives each `name=value` line.

    Returns:
        FitResult(TorchTabularModel, validation metrics of the best epoch's network, per-epoch history).
    """
    import torch

    from kfp_ct.components._common.training import cpu_threads

    hp = resolve_hyperparameters(hyperparameters)
    x_train, y_train, x_val, y_val = check_inputs(x_train, y_train, x_val, y_val, task, n_classes)
    dev = pick_device(device)
    threads = torch.get_num_threads()
    try:
        if dev.type == "cpu":  # torch defaults to the host's cores, not the pod's CPU limit
            torch.set_num_threads(cpu_threads())
        return _fit(x_train, y_train, x_val, y_val, task, n_classes, hp, seed, dev, log)
    finally:
        torch.set_num_threads(threads)


def _fit(x_train, y_train, x_val, y_val, task, n_classes, hp, seed, dev, log):
    import torch

    from kfp_ct.components._common.training import FitResult, validation_metrics

    batch_size = hp["batch_size"] or auto_batch_size(len(x_train), dev.type)
    classify = task == "classification"
    target_mean, target_std = (0.0, 1.0) if classify else target_scaling(y_train)

    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        generator = torch.Generator(device=dev).manual_seed(seed)  # batch order, drawn on the device
        network = build_network(x_train.shape[1], n_classes if classify else 1, hp["hidden_sizes"], hp["dropout"]).to(
            dev
        )
        # The whole dataset, moved to the device once.
        try:
            X, X_val = torch.from_numpy(x_train).to(dev), torch.from_numpy(x_val).to(dev)
        except torch.cuda.OutOfMemoryError:
            gib = (x_train.nbytes + x_val.nbytes) / 2**30
            raise MemoryError(
                f"the features ({len(x_train) + len(x_val):,} rows x {x_train.shape[1]} columns, "
                f"{gib:.1f} GiB) do not fit in the memory of {dev}, where the trainer keeps them: "
                "train on fewer rows or on a larger GPU"
            ) from None
        if classify:
            y, y_v = torch.from_numpy(y_train).to(dev), torch.from_numpy(y_val).to(dev)
            weights = class_weights(y_train, n_classes, hp["class_weight"])
            criterion = torch.nn.CrossEntropyLoss(weight=None if weights is None else torch.from_numpy(weights).to(dev))
        else:
            y = torch.from_numpy((y_train - target_mean) / target_std).reshape(-1, 1).to(dev)
            y_v = torch.from_numpy((y_val - target_mean) / target_std).reshape(-1, 1).to(dev)
            criterion = torch.nn.MSELoss()
        optimizer = make_optimizer(network.parameters(), hp["lr"], hp["weight_decay"], dev.type)
        runner = maybe_compile(network, X[:batch_size]) if hp["compile"] else network

        history: list[dict[str, float]] = []
        best_loss, best_epoch, best_state, waited = math.inf, 0, None, 0
        for epoch in range(1, hp["epochs"] + 1):
            started = time.perf_counter()
            train_loss = train_epoch(runner, optimizer, criterion, X, y, batch_size, generator, dev.type)
            metric_tensors = epoch_metrics(evaluate(runner, X_val, dev.type), y_v, task, target_std)
            values = torch.stack([train_loss.double(), *(m.double() for m in metric_tensors.values())]).tolist()
            seconds = time.perf_counter() - started  # .tolist() waited for the device
            record = {"epoch": epoch, "loss": values[0], **dict(zip(metric_tensors, values[1:]))}
            print_metrics(record, log)
            history.append({**record, "seconds": seconds})
            if record["validation-loss"] < best_loss:
                best_loss, best_epoch, waited = record["validation-loss"], epoch, 0
                best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
            else:
                waited += 1
                if waited >= hp["patience"]:
                    break
        if best_state is None:
            raise ValueError(
                f"training diverged: the validation loss was never finite (lr={hp['lr']}; try a lower one)"
            )
        network.load_state_dict(best_state)

    network = network.float().cpu().eval()
    if not classify:  # fold the target scaling into the last layer: outputs in the target's own units
        with torch.no_grad():
            network[-1].weight.mul_(target_std)
            network[-1].bias.mul_(target_std).add_(target_mean)
    model = TorchTabularModel(network, task, x_train.shape[1], best_epoch, str(dev))
    return FitResult(estimator=model, metrics=validation_metrics(task, y_val, model.scores(x_val)), history=history)


# ----------------------------------------------------------------------------------------------------------------
# The component's work


def train_torch(
    train_path: str,
    featurizer_path: str,
    model_path: str,
    model_name: str,
    hyperparameters: dict | None = None,
    seed: int = 0,
    tracking_uri: str | None = None,
    target_column: str | None = None,
    task: str | None = None,
    train_metadata: dict | None = None,
    device: str | None = None,
    max_classes: int = MAX_CLASSES,
):
    """Trains the MLP on the train split, then saves, logs and registers the model (training.train).

    Hyperparameters are checked (names and values) before any data is read.
    """
    from kfp_ct.components._common import training

    resolve_hyperparameters(hyperparameters)
    return training.train(
        fit,
        TorchAdapter(),
        train_path=train_path,
        featurizer_path=featurizer_path,
        model_path=model_path,
        model_name=model_name,
        hyperparameters=hyperparameters,
        allowed_hyperparameters=DEFAULTS,
        estimator_name=ESTIMATOR,
        seed=seed,
        tracking_uri=tracking_uri,
        train_metadata=train_metadata,
        target_column=target_column,
        task=task,
        fit_options={"device": device} if device else None,
        max_classes=max_classes,
    )
