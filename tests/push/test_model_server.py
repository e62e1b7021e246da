"""The catalog's model server (a real kserve.ModelServer in a subprocess, on a free loopback port): V1 and V2 answers
equal the model's own predictions, bad payloads get a 4xx naming the problem, and the server keeps serving."""

from __future__ import annotations

import http.client
import json
import math
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest

from kfp_ct.components._common.model import load_model
from kfp_ct.components.push.core import v2_answer, v2_request

pytestmark = pytest.mark.integration
NAME = "elec2"


def _post(url: str, body, content_type: str = "application/json") -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"content-type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture(scope="module")
def rows(trained_model):
    """200 held-out rows as JSON records, and the model's own answers for them."""
    model = load_model(trained_model["path"])
    names = [name for name, _ in model.input_columns]
    frame = pd.read_parquet(trained_model["test"]).head(200)[names]
    records = json.loads(frame.to_json(orient="records"))
    return {
        "model": model,
        "names": names,
        "records": records,
        "labels": model.predict(frame).tolist(),
        "proba": model.predict_proba(frame),
    }


def _valid(records):
    return {"instances": records}


def test_v1_records_rows_and_v2_equal_direct_predictions(model_server, rows):
    status, records = _post(f"{model_server}/v1/models/{NAME}:predict", {"instances": rows["records"]})
    assert status == 200, records
    assert records["predictions"] == rows["labels"]
    np.testing.assert_allclose(records["probabilities"], rows["proba"], rtol=0, atol=1e-12)

    as_rows = [[record[name] for name in rows["names"]] for record in rows["records"]]
    status, by_rows = _post(f"{model_server}/v1/models/{NAME}:predict", {"instances": as_rows})
    assert status == 200 and by_rows == records

    status, v2 = _post(
        f"{model_server}/v2/models/{NAME}/infer", v2_request(rows["records"], rows["model"].input_columns)
    )
    assert status == 200, v2
    outputs = {o["name"]: o for o in v2["outputs"]}
    assert outputs["probabilities"]["shape"] == [200, 2] and outputs["probabilities"]["datatype"] == "FP64"
    answer = v2_answer(v2)
    assert answer["predictions"] == rows["labels"]
    np.testing.assert_allclose(answer["probabilities"], rows["proba"], rtol=0, atol=1e-12)


def test_missing_values_are_scored_as_the_model_scores_them(model_server, rows):
    records = [dict(r) for r in rows["records"][:4]]
    records[0]["nswprice"] = None
    records[1]["weekday"] = None
    records[2] = {name: None for name in rows["names"]}
    frame = pd.DataFrame.from_records(records, columns=rows["names"])
    labels, proba = rows["model"].predict(frame).tolist(), rows["model"].predict_proba(frame)
    status, v1 = _post(f"{model_server}/v1/models/{NAME}:predict", {"instances": records})
    assert status == 200 and v1["predictions"] == labels, v1
    np.testing.assert_allclose(v1["probabilities"], proba, rtol=0, atol=1e-12)
    status, v2 = _post(f"{model_server}/v2/models/{NAME}/infer", v2_request(records, rows["model"].input_columns))
    assert status == 200, v2
    assert v2_answer(v2)["predictions"] == labels
    np.testing.assert_allclose(v2_answer(v2)["probabilities"], proba, rtol=0, atol=1e-12)


def test_health_metadata_and_metrics(model_server, rows):
    for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{NAME}/ready", f"/v1/models/{NAME}", "/"):
        assert _get(model_server + path)[0] == 200, path
    status, text = _get(f"{model_server}/v2/models/{NAME}")
    metadata = json.loads(text)
    assert [i["name"] for i in metadata["inputs"]] == rows["names"]
    assert {i["name"]: i["datatype"] for i in metadata["inputs"]}["weekday"] == "BYTES"
    assert [o["name"] for o in metadata["outputs"]] == ["predictions", "probabilities"]
    _post(f"{model_server}/v1/models/{NAME}:predict", {"instances": rows["records"][:1]})
    status, metrics = _get(f"{model_server}/metrics")
    assert status == 200 and f'request_predict_seconds_count{{model_name="{NAME}"}}' in metrics
    assert _get(f"{model_server}/v2/models/nope/ready")[0] == 404


def _v2_inputs(rows, n=2):
    return v2_request(rows["records"][:n], rows["model"].input_columns)["inputs"]


def _with(inputs: list[dict], i: int, **changes) -> list[dict]:
    inputs[i] = {**inputs[i], **changes}
    return inputs


def _bad_payloads(rows):
    """(name, path, body, content type, expected status, text the error must contain)."""
    record = rows["records"][0]
    v1, v2 = f"/v1/models/{NAME}:predict", f"/v2/models/{NAME}/infer"
    without = {k: v for k, v in record.items() if k != "nswprice"}
    wrong_v2_type = _v2_inputs(rows)
    wrong_v2_type[3] = {**wrong_v2_type[3], "datatype": "BYTES", "data": ["a", "b"]}
    short_v2 = _v2_inputs(rows)
    short_v2[1] = {**short_v2[1], "shape": [1], "data": short_v2[1]["data"][:1]}
    mismatched_v2 = _v2_inputs(rows)
    mismatched_v2[2] = {**mismatched_v2[2], "shape": [3]}
    return [
        ("missing column", v1, {"instances": [without]}, "application/json", 400, "'nswprice'"),
        ("unknown column", v1, {"instances": [{**record, "price": 1}]}, "application/json", 400, "'price'"),
        (
            "text in a number column",
            v1,
            {"instances": [{**record, "nswdemand": "high"}]},
            "application/json",
            400,
            "column 'nswdemand' expects a number",
        ),
        (
            "bool in a number column",
            v1,
            {"instances": [{**record, "period": True}]},
            "application/json",
            400,
            "column 'period'",
        ),
        (
            "bool among numbers in a row",
            v1,
            {"instances": [[record[n] for n in rows["names"]], [True] + [record[n] for n in rows["names"][1:]]]},
            "application/json",
            400,
            "column 'date' expects a number (double), got True (bool) in instance 1",
        ),
        (
            "nested list in a number column",
            v1,
            {"instances": [{**record, "date": [1, 2]}, {**record, "date": [3]}]},
            "application/json",
            400,
            "column 'date' expects a number",
        ),
        (
            "V2 infinite number",
            v2,
            {"inputs": _with(_v2_inputs(rows), 4, data=[1.0, float("inf")])},
            "application/json",
            400,
            "column 'nswdemand' holds an infinite value",
        ),
        (
            "list in a text column",
            v1,
            {"instances": [{**record, "weekday": ["mon"]}]},
            "application/json",
            400,
            "column 'weekday' expects text",
        ),
        ("empty batch", v1, {"instances": []}, "application/json", 400, "empty"),
        ("no instances", v1, {"rows": [record]}, "application/json", 400, "'instances'"),
        (
            "instances not a list",
            v1,
            {"instances": record},
            "application/json",
            400,
            "to be a list",
        ),  # KServe's own check
        ("short row", v1, {"instances": [[1.0, 2.0]]}, "application/json", 400, "has 2 values, expected 9"),
        (
            "mixed records and rows",
            v1,
            {"instances": [record, [1.0]]},
            "application/json",
            400,
            "send all records or all rows",
        ),
        ("malformed JSON", v1, b'{"instances": [', "application/json", 400, "Unrecognized request format"),
        ("malformed JSON, no content type", v1, b'{"instances": [', "text/plain", 400, "not valid JSON"),
        ("body not an object", v1, [record], "application/json", 400, "JSON object"),
        ("V2 missing input", v2, {"inputs": _v2_inputs(rows)[1:]}, "application/json", 400, "'date'"),
        (
            "V2 unknown input",
            v2,
            {"inputs": _v2_inputs(rows) + [{"name": "x", "shape": [2], "datatype": "FP64", "data": [1, 2]}]},
            "application/json",
            400,
            "unknown input 'x'",
        ),
        (
            "V2 wrong datatype",
            v2,
            {"inputs": wrong_v2_type},
            "application/json",
            400,
            "input 'nswprice' has datatype BYTES",
        ),
        ("V2 rows disagree", v2, {"inputs": short_v2}, "application/json", 400, "input 'day' has 1 rows"),
        ("V2 shape and data disagree", v2, {"inputs": mismatched_v2}, "application/json", 400, "input 'period'"),
        ("V2 malformed JSON", v2, b'{"inputs": [{"name": ', "application/json", 422, ""),
        ("V2 not an inference request", v2, {"inputs": "date"}, "application/json", 422, "inputs"),
    ]


def test_bad_payloads_get_4xx_naming_the_problem_and_serving_goes_on(model_server, rows):
    payloads = _bad_payloads(rows)
    assert len(payloads) >= 10
    for name, path, body, content_type, expected, text in payloads:
        status, answer = _post(model_server + path, body, content_type)
        assert status == expected, f"{name}: HTTP {status} {answer}"
        assert text in json.dumps(answer), f"{name}: {answer}"
        status, answer = _post(f"{model_server}/v1/models/{NAME}:predict", {"instances": rows["records"][:3]})
        assert status == 200 and answer["predictions"] == rows["labels"][:3], f"after {name}: {answer}"


def test_load_8_connections_with_bad_payloads(model_server, rows):
    """8 keep-alive connections for up to 20 s, 10% bad payloads: no 5xx, every valid request answered right."""
    url = urlparse(model_server)
    path = f"/v1/models/{NAME}:predict"
    good = [(json.dumps({"instances": [r]}).encode(), rows["labels"][i]) for i, r in enumerate(rows["records"][:50])]
    bad = [
        json.dumps(body).encode()
        for _, p, body, ctype, _, _ in _bad_payloads(rows)
        if p.startswith("/v1") and ctype == "application/json" and not isinstance(body, bytes)
    ]
    deadline = time.monotonic() + 20
    results = {"ok": 0, "bad_4xx": 0, "wrong": [], "errors": []}
    lock = threading.Lock()

    def client(worker: int):
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        i = worker
        while time.monotonic() < deadline:
            i += 1
            is_bad = i % 10 == 0
            body, label = (bad[i % len(bad)], None) if is_bad else good[i % len(good)]
            try:
                connection.request("POST", path, body, {"content-type": "application/json"})
                response = connection.getresponse()
                answer = json.loads(response.read())
            except Exception as err:  # a dropped request
                with lock:
                    results["errors"].append(f"{type(err).__name__}: {err}")
                connection.close()
                connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
                continue
            with lock:
                if is_bad and 400 <= response.status < 500:
                    results["bad_4xx"] += 1
                elif not is_bad and response.status == 200 and answer["predictions"] == [label]:
                    results["ok"] += 1
                else:
                    results["wrong"].append((is_bad, response.status, answer))
        connection.close()

    threads = [threading.Thread(target=client, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert results["errors"] == [] and results["wrong"] == [], results
    assert results["ok"] > 100 and results["bad_4xx"] > 10, results
    assert math.isfinite(results["ok"])


def test_compiled_and_generic_scorers_agree(trained_model, rows, monkeypatch):
    """The numpy fast path is used for the catalog's scikit-learn models and answers exactly as the generic path."""
    import asyncio

    from kfp_ct.components.push.server import build_model

    fast = build_model(trained_model["path"], NAME)
    monkeypatch.setenv("KFP_CT_SERVER_FAST_PATH", "0")
    generic = build_model(trained_model["path"], NAME)
    assert fast.predictor.compiled is not None and generic.predictor.compiled is None
    body = {"instances": rows["records"]}
    a, b = asyncio.run(fast.predict(body)), asyncio.run(generic.predict(body))
    assert a["predictions"] == b["predictions"] == rows["labels"]
    assert np.array_equal(a["probabilities"], b["probabilities"])


def _raw_request(base: str, head: bytes, body_parts=()) -> tuple[int, bytes]:
    """Sends `head` on a fresh connection, then `body_parts` from another thread while the answer is read, as a
    client that sends its whole body does: (status, body of the answer)."""
    import socket

    address = urlparse(base)
    with socket.create_connection((address.hostname, address.port), timeout=60) as sock:
        sock.sendall(head)

        def send_body():
            try:
                for part in body_parts:
                    sock.sendall(part)
            except OSError:
                pass

        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        sender.join(60)
    return int(answer.split(b" ", 2)[1]), answer.split(b"\r\n\r\n", 1)[1]


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 62


def test_a_body_over_the_limit_is_refused_413_and_serving_goes_on(model_server, rows):
    from kfp_ct.components.push.server import MAX_BODY_BYTES

    path = f"/v1/models/{NAME}:predict"
    hundred_mb = 100 << 20
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {hundred_mb}\r\n"
    too_large = f"request body too large: {hundred_mb} bytes, over the server's limit of {MAX_BODY_BYTES} bytes"
    # a client that waits for 100 Continue gets the 413 before it sends a byte of the body
    status, body = _raw_request(model_server, (head + "Expect: 100-continue\r\n\r\n").encode())
    assert status == 413 and too_large in json.loads(body)["error"]
    # a client that sends its 100 MB at once gets the 413, not a reset connection
    megabyte = b"[" + b" " * ((1 << 20) - 2) + b"]"
    status, body = _raw_request(model_server, (head + "\r\n").encode(), [megabyte] * 100)
    assert status == 413 and too_large in json.loads(body)["error"]
    # a streamed (chunked) body is refused once it passes the limit
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunks = [b"%x\r\n%s\r\n" % (len(megabyte), megabyte)] * (MAX_BODY_BYTES // len(megabyte) + 2) + [b"0\r\n\r\n"]
    status, body = _raw_request(model_server, head.encode(), chunks)
    assert status == 413 and f"more than {MAX_BODY_BYTES} bytes (streamed)" in json.loads(body)["error"]
    status, answer = _post(f"{model_server}{path}", {"instances": rows["records"][:3]})
    assert status == 200 and answer["predictions"] == rows["labels"][:3]


def test_the_body_limit_is_configurable(trained_model, rows, tmp_path):
    import os

    from elec2_serving import start_model_server, stop_model_server

    process, base = start_model_server(
        trained_model["path"], NAME, tmp_path / "server.log", env={**os.environ, "KFP_CT_MAX_BODY_BYTES": "20000"}
    )
    try:
        status, answer = _post(f"{base}/v1/models/{NAME}:predict", {"instances": rows["records"][:3]})
        assert status == 200, answer
        status, answer = _post(f"{base}/v1/models/{NAME}:predict", {"instances": rows["records"] * 10})
        assert status == 413 and "over the server's limit of 20000 bytes" in answer["error"]
        big = v2_request(rows["records"] * 10, rows["model"].input_columns)
        assert _post(f"{base}/v2/models/{NAME}/infer", big)[0] == 413
        status, answer = _post(f"{base}/v1/models/{NAME}:predict", {"instances": rows["records"][:3]})
        assert status == 200, answer
    finally:
        stop_model_server(process)
