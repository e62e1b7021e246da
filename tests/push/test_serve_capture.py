"""`kfp-ct serve MODEL --capture URI`: the catalog's model server writes what it scores in the capture layout (the
same as the capture sink's), with the request id, the served version, the typed inputs and its own answers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from loopback import free_port, wait_for_http

from kfp_ct.components._common import capture

pytestmark = pytest.mark.integration


def _post(url: str, body: dict, headers: dict | None = None) -> dict:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"content-type": "application/json", **(headers or {})}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_serve_capture_writes_what_the_server_answered(trained_model, tmp_path):
    with open(Path(trained_model["path"]) / "input_example.json") as f:
        example = json.load(f)
    records = [dict(zip(example["columns"], row)) for row in example["data"]][:3]
    port, out = free_port(), tmp_path / "capture"
    args = [sys.executable, "-m", "kfp_ct.pipelines.cli", "serve", trained_model["path"], "--port", str(port)]
    args += ["--name", "elec2", "--capture", str(out)]
    with open(tmp_path / "serve.log", "wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/v2/models/elec2/ready", process)
        v1 = _post(f"{base}/v1/models/elec2:predict", {"instances": records[:2]}, {"x-request-id": "client-1"})
        v2_inputs = [
            {
                "name": name,
                "shape": [1],
                "datatype": "BYTES" if kind == "string" else "FP64",
                "data": [records[2][name]],
            }
            for name, kind in [
                (n, "string" if isinstance(records[2][n], str) else "double") for n in example["columns"]
            ]
        ]
        v2 = _post(f"{base}/v2/models/elec2/infer", {"id": "v2-request", "inputs": v2_inputs})
        anonymous = _post(f"{base}/v1/models/elec2:predict", {"instances": records[:1]})
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the server stops its model: the capture thread writes what it holds
        process.wait(timeout=60)
    table = capture.read_capture(str(out), "elec2")
    assert table is not None, (tmp_path / "serve.log").read_text()[-3000:]
    rows = {(r["request_id"], r["row"]): r for r in table.to_pylist()}
    assert len(rows) == 4
    assert [rows[("client-1", i)]["prediction"] for i in range(2)] == v1["predictions"]
    assert rows[("client-1", 1)]["probabilities"] == pytest.approx(v1["probabilities"][1])
    assert rows[("client-1", 0)]["nswprice"] == pytest.approx(records[0]["nswprice"])
    assert rows[("client-1", 0)]["weekday"] == records[0]["weekday"]
    assert rows[("v2-request", 0)]["prediction"] == v2["outputs"][0]["data"][0]
    (other,) = [r for (rid, _), r in rows.items() if rid not in ("client-1", "v2-request")]
    assert other["prediction"] == anonymous["predictions"][0] and len(other["request_id"]) == 32  # a new uuid
    assert {r["model_version"] for r in rows.values()} == {"model"}  # the served folder's name
    assert str(table.schema.field("day").type) == "int64"
    assert all("/model=elec2/dt=" in f for f in capture.capture_files(str(out), "elec2"))
