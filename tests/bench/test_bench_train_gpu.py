"""The GPU training benchmark runs (--quick) and prints the trainer's and the reference loop's samples/second with
their ratio; on a GPU the ratio must meet the goal."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "train_gpu.py"


def _run(*args: str) -> tuple[str, float, float, float]:
    done = subprocess.run([sys.executable, str(BENCH), "--quick", *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    reference = re.search(r"^reference loop \(device-resident tensors\):\s+([\d,]+) samples/s$", out, re.M)
    trainer = re.search(
        r"^train_torch fit \(epochs 2\.\.\d+\):\s+([\d,]+) samples/s \(last epoch "
        r"validation-rmse=[\d.]+\)$",
        out,
        re.M,
    )
    ratio = re.search(r"^ratio trainer/reference: ([\d.]+) \(goal >= 0\.70: (.+)\)$", out, re.M)
    assert reference and trainer and ratio, out
    reference_rate, trainer_rate = (float(m.group(1).replace(",", "")) for m in (reference, trainer))
    assert reference_rate > 0 and trainer_rate > 0
    assert float(ratio.group(1)) == pytest.approx(trainer_rate / reference_rate, abs=2e-3)
    return out, reference_rate, trainer_rate, float(ratio.group(1))


def test_quick_run_on_cpu_prints_both_rates_and_the_ratio():
    out, _, _, ratio = _run("--device", "cpu", "--threads", "1")
    assert re.search(
        r"^device: cpu \(CPU, 1 threads\); MLP 64->512->512->1, batch 2048, 8,192 training rows; "
        r"float32, AdamW$",
        out,
        re.M,
    ), out
    assert "(goal >= 0.70: applies on a GPU; this run is on CPU)" in out
    assert ratio > 0


@pytest.mark.gpu
def test_quick_run_on_cuda_meets_the_goal():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    out, _, _, ratio = _run("--device", "cuda")
    assert re.search(
        r"^device: cuda(:\d+)? \(.+\); MLP 64->512->512->1, batch 8192, 1,048,576 training rows; "
        r"bf16 autocast, fused AdamW$",
        out,
        re.M,
    ), out
    assert ratio >= 0.70 and "(goal >= 0.70: met)" in out, out
