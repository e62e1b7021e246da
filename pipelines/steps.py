"""How the pipelines run each step on a cluster: hardware, retries, caching and credentials live here, never in the
components."""

from typing import Optional

from kfp_ct.pipelines.credentials import use_credentials


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
        task.set_retry(retries)
    return use_credentials(task)
