"""Keras trainer: a tabular network of Dense layers (ReLU, Dropout) on TensorFlow, fitted on featurized rows.

It takes the neural trainers' hyperparameters (`_common/neural.py`; `compile` means XLA here) and prints the same
`name=value` lines each epoch as the PyTorch trainer (from a Keras callback), so Katib tunes either the same way. On
a GPU the hidden layers compute in mixed precision (bfloat16 on compute capability 8.0 and up, float16 with loss
scaling below) and the output layer in float32; on CPU everything is float32. Runs are seeded with
`keras.utils.set_random_seed`. Early stopping keeps the weights of the epoch with the lowest validation loss; class
weights go to `Model.fit`. Regression fits a standardised target and folds the scaling into the last layer, so the
saved model predicts the target in its own units. The saved model is always a float32 `keras.Sequential`, in the
`.keras` format through MLflow's keras flavor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kfp_ct.components._common import neural
from kfp_ct.components._common.neural import DEFAULTS, ESTIMATOR, outputs_to_scores
from kfp_ct.components._common.training import MAX_CLASSES, TrainingResult, print_line, print_metrics


class KerasTabularModel(neural.FittedNetwork):
    """A fitted network: `model` is a float32 keras.Sequential whose output is the logits (classification) or the
    target in its own units (regression)."""

    def __init__(
        self, model, task: str, n_features: int, best_epoch: int = 0, device: str = "cpu", precision: str = "float32"
    ):
        super().__init__(task, n_features, best_epoch, device)
        self.model = model
        self.precision = precision  # the Keras dtype policy of the hidden layers in training

    def network_outputs(self, matrix: np.ndarray) -> np.ndarray:
        return model_outputs(self.model, matrix)


def model_outputs(model, matrix: np.ndarray) -> np.ndarray:
    """The model's outputs over a matrix, in bounded batches, called directly (no tf.function retracing)."""
    return np.concatenate(
        [
            np.asarray(model(matrix[s : s + neural.EVAL_BATCH], training=False), dtype=np.float32)
            for s in range(0, len(matrix), neural.EVAL_BATCH)
        ]
    )


MODEL_FILE = "data/model.keras"  # where mlflow.keras.save_model writes the `.keras` file


class KerasAdapter:
    """Saves the model with mlflow.keras (the `.keras` file), loads that file with Keras' safe mode, and scores raw
    rows: featurizer, model, softmax for classification."""

    framework = "keras"
    libraries = ("tensorflow", "tensorflow-cpu", "keras")

    def save(self, estimator: KerasTabularModel, featurizer, path: str, mlflow_model) -> None:
        import mlflow.keras
        from mlflow.models import ModelSignature
        from mlflow.types import Schema, TensorSpec

        from kfp_ct.components._common.model import pip_requirements

        n_outputs = int(estimator.model.outputs[0].shape[-1])
        signature = ModelSignature(
            inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, estimator.n_features_in_))]),
            outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, n_outputs))]),
        )
        mlflow.keras.save_model(
            estimator.model,
            path,
            mlflow_model=mlflow_model,
            signature=signature,
            pip_requirements=pip_requirements(self.libraries),
        )

    def load(self, path: str, featurizer):
        import os

        from kfp_ct.components._common.model import load_keras

        model = load_keras(os.path.join(path, MODEL_FILE))  # the file itself, whatever the MLmodel says
        task = featurizer.task

        def score(frame):
            return outputs_to_scores(model_outputs(model, featurizer.transform(frame)), task)

        return score


def limit_threads() -> None:
    """TensorFlow's CPU thread pools sized to the pod's CPU limit (training.cpu_threads) instead of the host's cores;
    possible only before TensorFlow's runtime starts in this process, and left as they are after."""
    import tensorflow as tf

    from kfp_ct.components._common.training import cpu_threads

    threads = cpu_threads()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # the runtime is already initialized
        pass


def gpu_precision() -> tuple[str, str]:
    """(device, Keras dtype policy): ('gpu', 'mixed_bfloat16' on compute capability >= 8.0, else 'mixed_float16')
    when TensorFlow sees a GPU, ('cpu', 'float32') otherwise."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "cpu", "float32"
    capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability") or (0, 0)
    return "gpu", "mixed_bfloat16" if tuple(capability) >= (8, 0) else "mixed_float16"


def build_model(
    n_features: int, n_outputs: int, hidden_sizes: list[int], dropout: float, seed: int, policy: str = "float32"
):
    """Dense(ReLU) [Dropout] blocks in `policy`, and a float32 output layer (logits or the value)."""
    import keras

    layers = [keras.Input((n_features,))]
    for i, size in enumerate(hidden_sizes):
        layers.append(keras.layers.Dense(size, activation="relu", dtype=policy, name=f"dense_{i}"))
        if dropout > 0:
            layers.append(keras.layers.Dropout(dropout, seed=seed + i, dtype=policy, name=f"dropout_{i}"))
    layers.append(keras.layers.Dense(n_outputs, dtype="float32", name="output"))
    return keras.Sequential(layers, name="tabular_mlp")


def epoch_metrics(outputs: np.ndarray, target: np.ndarray, task: str, target_std: float) -> dict[str, float]:
    """The PyTorch trainer's per-epoch validation metrics (same names, same definitions), in numpy."""
    from sklearn.metrics import roc_auc_score

    outputs = np.asarray(outputs, dtype=np.float64)
    if task == "classification":
        shifted = outputs - outputs.max(axis=1, keepdims=True)
        log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        probabilities = np.exp(log_probabilities)
        metrics = {
            "validation-loss": float(-log_probabilities[np.arange(len(target)), target].mean()),
            "validation-accuracy": float((outputs.argmax(axis=1) == target).mean()),
        }
        n_classes = outputs.shape[1]
        if n_classes == 2:
            if len(np.unique(target)) == 2:
                metrics["validation-roc_auc"] = float(roc_auc_score(target, probabilities[:, 1]))
        else:
            prevalence = np.bincount(target, minlength=n_classes) / len(target)
            metrics["validation-roc_auc"] = float(
                sum(
                    prevalence[k] * roc_auc_score(target == k, probabilities[:, k])
                    for k in range(n_classes)
                    if 0 < prevalence[k] < 1
                )
            )
        return metrics
    scaled_error = outputs[:, 0] - target
    error, centred = scaled_error * target_std, (target - target.mean()) * target_std
    return {
        "validation-loss": float(np.mean(scaled_error**2)),
        "validation-rmse": float(np.sqrt(np.mean(error**2))),
        "validation-mae": float(np.mean(np.abs(error))),
        "validation-r2": float(1 - np.sum(error**2) / np.sum(centred**2)) if np.any(centred) else math.nan,
    }


def epoch_callback(
    x_val: np.ndarray, y_val: np.ndarray, task: str, target_std: float, patience: int, log: Callable[[str], None]
):
    """A callback that prints each epoch's `name=value` lines, keeps the weights of the lowest validation loss and
    stops after `patience` epochs without a lower one."""
    import time

    import keras

    class EpochMetrics(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.history: list[dict[str, float]] = []
            self.best_loss, self.best_epoch, self.best_weights, self.waited = math.inf, 0, None, 0

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            outputs = model_outputs(self.model, x_val)
            record = {
                "epoch": epoch + 1,
                "loss": float((logs or {}).get("loss", math.nan)),
                **epoch_metrics(outputs, y_val, task, target_std),
            }
            print_metrics(record, log=log)
            self.history.append({**record, "seconds": time.perf_counter() - self.started})
            if record["validation-loss"] < self.best_loss:
                self.best_loss, self.best_epoch, self.waited = record["validation-loss"], epoch + 1, 0
                self.best_weights = self.model.get_weights()
            else:
                self.waited += 1
                if self.waited >= patience:
                    self.model.stop_training = True

    return EpochMetrics()


def fit(
    x_train,
    y_train,
    x_val,
    y_val,
    task: str,
    n_classes: int | None,
    hyperparameters: dict | None = None,
    seed: int = 0,
    log: Callable[[str], None] = print_line,
):
    """Fits the network (the trainer contract of kfp_ct.components._common.training) and scores the validation
    rows; arguments as the PyTorch trainer's `fit`.

    Returns:
        FitResult(KerasTabularModel, validation metrics of the best epoch's weights, per-epoch history).
    """
    import keras

    from kfp_ct.components._common.training import FitResult, validation_metrics

    hp = neural.resolve_hyperparameters(hyperparameters)
    x_train, y_train, x_val, y_val = neural.check_inputs(x_train, y_train, x_val, y_val, task, n_classes)
    limit_threads()
    device, policy = gpu_precision()
    batch_size = hp["batch_size"] or neural.auto_batch_size(len(x_train), "cuda" if device == "gpu" else "cpu")
    classify = task == "classification"
    target_mean, target_std, weights = 0.0, 1.0, None
    if classify:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        balanced = neural.class_weights(y_train, n_classes, hp["class_weight"])
        weights = None if balanced is None else {k: float(w) for k, w in enumerate(balanced)}
        fit_target, val_target = y_train, y_val
    else:
        loss = keras.losses.MeanSquaredError()
        target_mean, target_std = neural.target_scaling(y_train)
        fit_target = ((y_train - target_mean) / target_std).astype(np.float32)
        val_target = ((y_val - target_mean) / target_std).astype(np.float32)

    keras.utils.set_random_seed(seed)
    n_outputs = n_classes if classify else 1
    network = build_model(x_train.shape[1], n_outputs, hp["hidden_sizes"], hp["dropout"], seed, policy)
    optimizer = keras.optimizers.AdamW(learning_rate=hp["lr"], weight_decay=hp["weight_decay"])
    if policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    network.compile(optimizer=optimizer, loss=loss, jit_compile=hp["compile"])
    callback = epoch_callback(x_val, val_target, task, target_std, hp["patience"], log)
    network.fit(
        x_train,
        fit_target,
        batch_size=batch_size,
        epochs=hp["epochs"],
        class_weight=weights,
        shuffle=True,
        verbose=0,
        callbacks=[callback],
    )
    if callback.best_weights is None:
        raise neural.diverged(hp["lr"])

    # The saved model: float32 throughout, the best epoch's weights, the target scaling folded into the output.
    final = build_model(x_train.shape[1], n_outputs, hp["hidden_sizes"], hp["dropout"], seed)
    best = [np.asarray(w, dtype=np.float32) for w in callback.best_weights]
    if not classify:
        best[-2], best[-1] = best[-2] * target_std, best[-1] * target_std + target_mean
    final.set_weights(best)
    model = KerasTabularModel(final, task, x_train.shape[1], callback.best_epoch, device, policy)
    return FitResult(
        estimator=model, metrics=validation_metrics(task, y_val, model.scores(x_val)), history=callback.history
    )


@dataclass
class TrainKerasResult(TrainingResult):
    """What `train_keras` did (see training.TrainingResult)."""


def train_keras(
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
) -> TrainKerasResult:
    """Trains the network on the train split, then saves, logs and registers the model (training.train).

    `target_column` and `task`, when given, must be the featurizer's; `train_metadata` is the train dataset
    artifact's metadata and uri (recorded in the model). Hyperparameters are checked (names and values) before any
    data is read.
    """
    from kfp_ct.components._common import training

    neural.resolve_hyperparameters(hyperparameters)
    return training.train(
        fit,
        KerasAdapter(),
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
        max_classes=max_classes,
        result_type=TrainKerasResult,
    )
