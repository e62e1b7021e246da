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
`torch.load(weights_only=True)`, and its architecture in JSON. The hyperparameters, the input checks and the scoring
are the Keras trainer's too (`_common/neural.py`).
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kfp_ct.components._common import neural
from kfp_ct.components._common.neural import DEFAULTS, ESTIMATOR, outputs_to_scores
from kfp_ct.components._common.training import MAX_CLASSES, TrainingResult, print_line, print_metrics

# ----------------------------------------------------------------------------------------------------------------
# The fitted model and its adapter (kfp_ct.components._common.model)


class TorchTabularModel(neural.FittedNetwork):
    """A fitted MLP. `network` is a plain `torch.nn.Sequential` on the CPU, in float32, whose output is the logits
    (classification) or the target in its own units (regression)."""

    def __init__(self, network, task: str, n_features: int, best_epoch: int = 0, device: str = "cpu"):
        super().__init__(task, n_features, best_epoch, device)
        self.network = network

    def network_outputs(self, matrix: np.ndarray) -> np.ndarray:
        self.network.eval()
        return network_outputs(self.network, matrix)


def network_outputs(network, matrix: np.ndarray) -> np.ndarray:
    """The float32 outputs of a CPU network over a matrix, in bounded batches."""
    import torch

    with torch.inference_mode():
        return np.concatenate(
            [
                network(torch.from_numpy(matrix[s : s + neural.EVAL_BATCH])).float().numpy()
                for s in range(0, len(matrix), neural.EVAL_BATCH)
            ]
        )


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
        sizes = [neural.as_number("hidden_sizes", size, int, 1) for size in spec["hidden_sizes"]]
        args = (
            neural.as_number("n_features", spec["n_features"], int, 1),
            neural.as_number("n_outputs", spec["n_outputs"], int, 1),
            sizes,
            neural.as_number("dropout", spec["dropout"], float, 0.0, 0.95),
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
        batch = neural.EVAL_BATCH
        return torch.cat([network(X[s : s + batch]).float() for s in range(0, X.shape[0], batch)])


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
    log: Callable[[str], None] = print_line,
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

    hp = neural.resolve_hyperparameters(hyperparameters)
    x_train, y_train, x_val, y_val = neural.check_inputs(x_train, y_train, x_val, y_val, task, n_classes)
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

    batch_size = hp["batch_size"] or neural.auto_batch_size(len(x_train), dev.type)
    classify = task == "classification"
    target_mean, target_std = (0.0, 1.0) if classify else neural.target_scaling(y_train)

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
            weights = neural.class_weights(y_train, n_classes, hp["class_weight"])
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
            print_metrics(record, log=log)
            history.append({**record, "seconds": seconds})
            if record["validation-loss"] < best_loss:
                best_loss, best_epoch, waited = record["validation-loss"], epoch, 0
                best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
            else:
                waited += 1
                if waited >= hp["patience"]:
                    break
        if best_state is None:
            raise neural.diverged(hp["lr"])
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


@dataclass
class TrainTorchResult(TrainingResult):
    """What `train_torch` did (see training.TrainingResult)."""


def train_torch(
    *,
    train_path: str,
    featurizer_path: str,
    target_column: str | None = None,
    task: str | None = None,
    model_path: str,
    hyperparameters: dict | None = None,
    model_name: str,
    tracking_uri: str | None = None,
    seed: int = 0,
    max_classes: int = MAX_CLASSES,
    train_metadata: dict | None = None,
    device: str | None = None,
) -> TrainTorchResult:
    """Trains the MLP on the train split, then saves, logs and registers the model (training.train).

    `target_column` and `task`, when given, must be the featurizer's; `train_metadata` is the train dataset
    artifact's metadata and uri (recorded in the model); `device` is 'cuda', 'cpu' or None (CUDA when present).
    Hyperparameters are checked (names and values) before any data is read.
    """
    from kfp_ct.components._common import training

    neural.resolve_hyperparameters(hyperparameters)
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
        result_type=TrainTorchResult,
    )
