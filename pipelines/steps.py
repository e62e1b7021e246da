"""How the pipelines run each step on a cluster: hardware, retries, caching and credentials live here, never in the
components."""

from typing import Optional

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


def step(task, *, gpu: bool = False, memory: str = "4G", retries: int = 0, image: Optional[str] = None):
    """Configures a task: never cached (each step reads data or registry state that changes between runs, and
    `enable_caching=False` at submission does not reach tasks inside dsl.If or sub-pipelines), credentials from the
    Secret, resources, a GPU for the GPU trainers, and `image` in place of the component's (the GPU image for the
    steps that load a torch or Keras model). kfp.local ignores the resources (with a warning)."""
    task.set_caching_options(False)
    if image:
        task.set_container_image(image)
    task.set_memory_request(memory).set_memory_limit(memory)
    if gpu:
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
    if retries:
        task.set_retry(retries, RETRY_BACKOFF, RETRY_BACKOFF_FACTOR, RETRY_MAX_DURATION)
    return use_credentials(task)
