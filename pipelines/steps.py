"""How the pipelines run each step on a cluster: hardware, retries, caching and credentials live here, never in the
components.

Where the GPU steps run is the cluster's choice, set when the pipelines are compiled (`kfp-ct compile
--gpu-node-selector KEY=VALUE --gpu-toleration KEY[=VALUE][:EFFECT]`, each repeatable). The CLI passes it here in
the environment, read when the pipelines are built: `KFP_CT_GPU_NODE_SELECTOR` (KEY=VALUE pairs) and
`KFP_CT_GPU_TOLERATIONS` (tolerations), each a comma-separated list.
"""

from __future__ import annotations

import os
from typing import Optional

from kfp import kubernetes

from kfp_ct.pipelines.credentials import use_credentials

RETRIES = 2
"""How often a step that only reads its inputs and writes its own outputs (preflight, ingest, validate, featurize,
reference_data, monitor_drift, evaluate, whose one registry write is an idempotent alias) is retried after a
transient failure (a lost node, an object store or registry that did not answer), waiting RETRY_BACKOFF, then twice
as long. The trainers (each attempt registers a version), tune and push are never retried blindly. Backend 2.5 (Argo)
retries only the tasks of the pipeline's root DAG and truncates the backoff factor to an integer; 2.14 and newer
retry every task that has the policy. kfp.local does not retry."""
RETRY_BACKOFF = "30s"
RETRY_BACKOFF_FACTOR = 2
RETRY_MAX_DURATION = "1800s"

TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def parse_node_selector(text: str) -> dict[str, str]:
    """`KEY=VALUE` -> {KEY: VALUE}."""
    key, sep, value = text.partition("=")
    if not (sep and key.strip() and value.strip()):
        raise ValueError(f"a GPU node selector is KEY=VALUE (a node label), got '{text}'")
    return {key.strip(): value.strip()}


def parse_toleration(text: str) -> dict:
    """`KEY=VALUE:EFFECT`, `KEY:EFFECT`, `KEY=VALUE` or `KEY` -> kfp-kubernetes' add_toleration arguments (operator
    Equal with a value, Exists without one; no effect tolerates every effect)."""
    head, _, effect = text.partition(":")
    key, sep, value = head.partition("=")
    if not key.strip() or (sep and not value.strip()) or (effect and effect not in TOLERATION_EFFECTS):
        raise ValueError(
            f"a GPU toleration is KEY[=VALUE][:EFFECT] with EFFECT one of {', '.join(TOLERATION_EFFECTS)}, got '{text}'"
        )
    toleration = {"key": key.strip(), "operator": "Equal" if sep else "Exists", "effect": effect or None}
    return {**toleration, "value": value.strip()} if sep else toleration


def gpu_placement() -> tuple[dict[str, str], list[dict]]:
    """The node selector and tolerations of the GPU steps, from the environment (see the module docstring)."""

    def items(variable: str) -> list[str]:
        return [item.strip() for item in os.environ.get(variable, "").split(",") if item.strip()]

    selector = {k: v for item in items("KFP_CT_GPU_NODE_SELECTOR") for k, v in parse_node_selector(item).items()}
    return selector, [parse_toleration(item) for item in items("KFP_CT_GPU_TOLERATIONS")]


def step(task, *, gpu: bool = False, memory: str = "4G", retries: int = 0, image: Optional[str] = None):
    """Configures a task: never cached (each step reads data or registry state that changes between runs, and
    `enable_caching=False` at submission does not reach tasks inside dsl.If or sub-pipelines), credentials from the
    Secret, resources, a GPU (with the compile-time node selector and tolerations) for the GPU steps, and `image` in
    place of the component's (the GPU image for the steps that load a torch or Keras model). kfp.local ignores the
    resources (with a warning) and the Kubernetes settings."""
    task.set_caching_options(False)
    if image:
        task.set_container_image(image)
    task.set_memory_request(memory).set_memory_limit(memory)
    if gpu:
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
        node_selector, tolerations = gpu_placement()
        for key, value in node_selector.items():
            kubernetes.add_node_selector(task, key, value)
        for toleration in tolerations:
            kubernetes.add_toleration(task, **toleration)
    if retries:
        task.set_retry(retries, RETRY_BACKOFF, RETRY_BACKOFF_FACTOR, RETRY_MAX_DURATION)
    return use_credentials(task)
