"""Benchmark: the PyTorch trainer's training throughput against a bare reference loop, same run, same device.

Both train an MLP 64 -> 512 -> 512 -> 1 (regression, MSE) with batch 8192 over rows already resident on the device:
on CUDA under bf16 autocast with fused AdamW, on CPU in float32 with AdamW (as the trainer does there). The
reference loop is the least a training loop can do: draw a permutation on the device, gather each batch, forward,
backward, step. The trainer (`kfp_ct.components.train_torch.core.fit`) does that plus its per-epoch work: a
validation pass over held-out rows (a quarter as many as the training rows: the catalog's 20% validation split),
the validation metrics on the device, one `name=value` line per metric, and early-stopping bookkeeping. Its
samples/second count training rows only, over whole epochs (validation included), the first epoch left out as
warm-up; the reference's steady state excludes its warm-up steps too, and both synchronize the device.

The data are synthetic (64 standard-normal features, a nonlinear target): throughput does not depend on the values,
and no shared dataset has 64 columns. Goal: trainer / reference >= 0.70 on a GPU.

    python bench/train_gpu.py [--quick] [--device cuda|cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

GOAL = 0.70
FEATURES, HIDDEN, BATCH = 64, (512, 512), 8192
VALIDATION_SHARE = 0.2  # of all rows, as training.VALIDATION_FRACTION

# (training rows, batch, trainer epochs) per device and mode; CPU runs stay at a few seconds each.
SETTINGS = {
    ("cuda", False): (2_097_152, BATCH, 6),
    ("cuda", True): (1_048_576, BATCH, 4),
    ("cpu", False): (32_768, BATCH, 3),
    ("cpu", True): (8_192, 2048, 3),
}


def make_data(n_rows: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_rows, FEATURES), dtype=np.float32)
    w = rng.standard_normal(FEATURES).astype(np.float32) / math.sqrt(FEATURES)
    y = np.tanh(x @ w) + 0.5 * np.sin(x[:, 0] * x[:, 1]) + 0.1 * rng.standard_normal(n_rows).astype(np.float32)
    return x, y.astype(np.float32)


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference_throughput(x, y, device, batch: int, warmup_steps: int, steps: int) -> float:
    """Samples/second of the bare loop over device-resident tensors, after `warmup_steps`."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(FEATURES, HIDDEN[0]),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN[0], HIDDEN[1]),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN[1], 1),
    ).to(device)
    cuda = device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True if cuda else None)
    X = torch.from_numpy(x).to(device)
    Y = torch.from_numpy(y).reshape(-1, 1).to(device)
    n_rows = X.shape[0]
    per_epoch = n_rows // batch
    permutation = torch.randperm(n_rows, device=device)

    def step(i: int) -> None:
        nonlocal permutation
        k = i % per_epoch
        if k == 0:
            permutation = torch.randperm(n_rows, device=device)
        index = permutation[k * batch : (k + 1) * batch]
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=cuda):
            out = model(X.index_select(0, index))
        loss = torch.nn.functional.mse_loss(out.float(), Y.index_select(0, index))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for i in range(warmup_steps):
        step(i)
    synchronize(device)
    started = time.perf_counter()
    for i in range(warmup_steps, warmup_steps + steps):
        step(i)
    synchronize(device)
    return steps * batch / (time.perf_counter() - started)


def trainer_throughput(x, y, device, batch: int, epochs: int) -> tuple[float, dict]:
    """Samples/second of train_torch's fit over epochs 2..epochs (whole epochs, validation included)."""
    from kfp_ct.components.train_torch import core

    n_valid = int(len(x) * VALIDATION_SHARE / (1 - VALIDATION_SHARE))
    xv, yv = make_data(n_valid, seed=1)
    result = core.fit(
        x,
        y,
        xv,
        yv,
        "regression",
        None,
        {
            "hidden_sizes": list(HIDDEN),
            "dropout": 0.0,
            "batch_size": batch,
            "epochs": epochs,
            "patience": epochs,
            "class_weight": "none",
        },
        seed=0,
        device=str(device),
        log=lambda line: None,
    )
    timed = result.history[1:]
    rows = len(x) * len(timed)
    return rows / sum(record["seconds"] for record in timed), result.history[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda when present")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's own)")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)  # the reference loop's
        os.environ["KFP_CT_THREADS"] = str(args.threads)  # the trainer's (training.cpu_threads)

    from kfp_ct.components.train_torch.core import pick_device

    device = pick_device(args.device)
    n_rows, batch, epochs = SETTINGS[(device.type, args.quick)]
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    x, y = make_data(n_rows)
    steps_per_epoch = n_rows // batch
    print(
        f"device: {device} ({name}); MLP {FEATURES}->{HIDDEN[0]}->{HIDDEN[1]}->1, batch {batch}, "
        f"{n_rows:,} training rows; {'bf16 autocast, fused AdamW' if cuda else 'float32, AdamW'}"
    )

    trainer, last = trainer_throughput(x, y, device, batch, epochs)
    reference = reference_throughput(
        x, y, device, batch, warmup_steps=min(steps_per_epoch, 20), steps=steps_per_epoch * (epochs - 1)
    )
    ratio = trainer / reference
    print(f"reference loop (device-resident tensors): {reference:>14,.0f} samples/s")
    print(
        f"train_torch fit (epochs 2..{epochs}):         {trainer:>14,.0f} samples/s "
        f"(last epoch validation-rmse={last['validation-rmse']:.4f})"
    )
    verdict = ("met" if ratio >= GOAL else "NOT met") if cuda else "applies on a GPU; this run is on CPU"
    print(f"ratio trainer/reference: {ratio:.3f} (goal >= {GOAL:.2f}: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
