"""A loopback stand-in for the KFP API server's REST endpoints (no KFP server runs here), and the pieces of a pod
that `kfp.Client()` reads in-cluster, with the fixtures that start them (a test module imports the fixtures it uses).

The stand-in answers the v2beta1 endpoints kfp.Client uses to start runs, records every request with its
Authorization and Host headers, and refuses runtime parameters the way the API server of KFP 2.5 does
(`validatePipelineJobInputs` in backend/src/apiserver/template/v2_template.go, for runs and recurring runs alike).
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

# where kfp.Client() looks for the API server from inside a pod (kfp.Client._IN_CLUSTER_DNS_NAME, namespace kubeflow)
IN_CLUSTER_HOST, IN_CLUSTER_PORT = "ml-pipeline.kubeflow.svc.cluster.local", 8888
PROFILE_NAMESPACE = "kubeflow-user-example-com"


@dataclass
class Request:
    method: str
    path: str
    body: dict | None
    authorization: str | None
    host: str | None


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# the JSON value each parameter type takes (a structpb.Value kind); JSON null is a NullValue and fits none of them
_KINDS = {
    "NUMBER_DOUBLE": ("double or integer", "number", _is_number),
    "NUMBER_INTEGER": ("double or integer", "number", _is_number),
    "STRING": ("string", "string", lambda v: isinstance(v, str)),
    "BOOLEAN": ("bool", "bool", lambda v: isinstance(v, bool)),
    "LIST": ("list", "list", lambda v: isinstance(v, list)),
    "STRUCT": ("struct", "struct", lambda v: isinstance(v, dict)),
}


def invalid_inputs(body: dict) -> str | None:
    """What KFP 2.5's validatePipelineJobInputs says about a run's runtime parameters (None when they pass)."""
    spec = body["pipeline_spec"]
    spec = spec.get("pipeline_spec", spec)  # with a platform spec the client sends both, side by side
    declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    given = (body.get("runtime_config") or {}).get("parameters") or {}
    for name, param in declared.items():
        if name not in given:
            if not param.get("isOptional") and "defaultValue" not in param:
                return f"parameter {name} is not optional, yet has neither default value nor user provided value"
            continue
        expected, kind, fits = _KINDS[param["parameterType"]]
        if not fits(given[name]):
            return (
                f"input parameter {name} requires type {expected}, but the parameter value is not of {kind} value type"
            )
    extra = sorted(set(given) - set(declared))
    if extra:
        return f"parameter(s) provided are not required by pipeline: {', '.join(extra)}"
    return None


class KfpApi(BaseHTTPRequestHandler):
    requests: list[Request] = []
    multi_user = False

    def _reply(self, body: dict, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, body) -> None:
        headers = self.headers
        self.requests.append(Request(self.command, self.path, body, headers.get("Authorization"), headers.get("Host")))

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self._record(None)
        if self.path.startswith("/apis/v2beta1/healthz"):
            self._reply({"multi_user": self.multi_user})
        else:
            self._reply({"experiments": []} if self.path.startswith("/apis/v2beta1/experiments") else {})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._record(body)
        kind = self.path.split("?")[0].rsplit("/", 1)[-1]
        if kind in ("runs", "recurringruns") and (problem := invalid_inputs(body)):
            self._reply({"code": 3, "message": f"Invalid input error: {problem}"}, status=400)  # InvalidArgument
            return
        ids = {
            "experiments": {"experiment_id": "exp-1"},
            "runs": {"run_id": "run-1"},
            "recurringruns": {"recurring_run_id": "rec-1"},
        }
        self._reply({**body, **ids[kind]})

    def log_message(self, *args):
        pass


def pod_files(root) -> dict:
    """The files a Kubeflow notebook pod has: the Kubernetes service-account token, CA and namespace, and the
    projected KFP token (audience pipelines.kubeflow.org). Returns their paths by role."""
    root.mkdir(parents=True, exist_ok=True)
    files = {  # role: (file name, content)
        "k8s_token": ("token", "kubernetes-service-account-token"),
        "k8s_ca": ("ca.crt", "-----BEGIN CERTIFICATE-----\n"),
        "namespace": ("namespace", PROFILE_NAMESPACE),
        "kfp_token": ("kfp-token", "projected-kfp-token\n"),
    }
    paths = {"kfp_context": str(root / "kfp-context.json")}  # where kfp.Client keeps the user namespace it found
    for role, (name, text) in files.items():
        (root / name).write_text(text)
        paths[role] = str(root / name)
    return paths


def in_cluster_patch(port: int, paths: dict) -> str:
    """Python that makes this process look like a pod for kfp.Client(): the service-account files where the
    kubernetes client and kfp read them (their paths are module constants), and the DNS name of the ml-pipeline
    service resolving to the stand-in on loopback (no cluster DNS here). Run in-process or in a notebook kernel."""
    return f"""
import socket as _socket

import kfp as _kfp
from kubernetes.config import incluster_config as _incluster

_incluster.SERVICE_TOKEN_FILENAME = {paths["k8s_token"]!r}
_incluster.SERVICE_CERT_FILENAME = {paths["k8s_ca"]!r}
_kfp.Client._NAMESPACE_PATH = {paths["namespace"]!r}
_kfp.Client._LOCAL_KFP_CONTEXT = {paths["kfp_context"]!r}
_resolve = _socket.getaddrinfo


def _cluster_dns(host, port, *args, **kwargs):
    if (host, int(port)) == ({IN_CLUSTER_HOST!r}, {IN_CLUSTER_PORT}):
        return _resolve("127.0.0.1", {port}, *args, **kwargs)
    return _resolve(host, port, *args, **kwargs)


_socket.getaddrinfo = _cluster_dns
"""


@pytest.fixture
def kfp_context(tmp_path, monkeypatch):
    """kfp.Client keeps the user namespace in ~/.config/kfp/context.json: a file of the test's own."""
    from kfp import Client

    monkeypatch.setattr(Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    for name in ("KFP_TOKEN", "KF_PIPELINES_SA_TOKEN_PATH", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def kfp_api(kfp_context):
    """The stand-in on a free loopback port; yields (its URL, the list of requests it received)."""
    KfpApi.requests, KfpApi.multi_user = [], False
    server = ThreadingHTTPServer(("127.0.0.1", 0), KfpApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", KfpApi.requests
    server.shutdown()
    server.server_close()


@pytest.fixture
def in_cluster(kfp_api, tmp_path, monkeypatch):
    """A pod's environment pointing at the stand-in (multi-user, as Kubeflow is): KUBERNETES_SERVICE_HOST/PORT,
    KF_PIPELINES_SA_TOKEN_PATH and the files above. Yields (the patch source for a notebook kernel, requests); this
    process is patched already (and restored after the test)."""
    from kfp import Client
    from kubernetes.config import incluster_config

    url, requests = kfp_api
    port = int(url.rsplit(":", 1)[1])
    KfpApi.multi_user = True
    paths = pod_files(tmp_path / "pod")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", paths["kfp_token"])
    for module, name in (
        (incluster_config, "SERVICE_TOKEN_FILENAME"),
        (incluster_config, "SERVICE_CERT_FILENAME"),
        (Client, "_NAMESPACE_PATH"),
        (socket, "getaddrinfo"),
    ):
        monkeypatch.setattr(module, name, getattr(module, name))  # restored after the test
    source = in_cluster_patch(port, paths)
    exec(compile(source, "in_cluster_patch", "exec"), {})
    yield source, requests
