"""Container tier: the catalog's images, built locally, run the components under kfp.local.DockerRunner and serve a
model, through a Docker API: Docker's, or podman's as `make containers-setup` serves it (see .ci/containers/).

Without a reachable API or a built image these tests skip and say why, so `make test` works without podman;
with KFP_CT_REQUIRE_CONTAINERS=1 (set by `make test-containers`) they fail instead.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PODMAN_HOME = Path(os.environ.get("KFP_CT_PODMAN_HOME", "/var/tmp/kfp-ct-podman"))
# A tier test that hangs (a container API call that never answers) fails after this long instead of holding CI.
TIER_TIMEOUT_S = 600


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("containers"):
            item.add_marker(pytest.mark.timeout(TIER_TIMEOUT_S))


def unavailable(reason: str):
    if os.environ.get("KFP_CT_REQUIRE_CONTAINERS") == "1":
        pytest.fail(f"{reason} (KFP_CT_REQUIRE_CONTAINERS=1)", pytrace=False)
    pytest.skip(reason)


def _use_podman_setup() -> None:
    """Points this process at the podman that `make containers-setup` serves, when nothing else is chosen."""
    sock = PODMAN_HOME / "docker.sock"
    if "DOCKER_HOST" not in os.environ and sock.exists():
        os.environ["DOCKER_HOST"] = f"unix://{sock}"


@pytest.fixture(scope="session")
def docker_client():
    try:
        import docker
    except ImportError:
        unavailable("the docker SDK is not installed (kfp's DockerRunner needs it: pip install docker)")
    _use_podman_setup()
    try:
        client = docker.from_env(timeout=900)
        client.ping()
    except Exception as err:  # docker raises DockerException, requests' errors, or OSError
        unavailable(
            f"no podman or Docker API is reachable ({type(err).__name__}: {err}); `make test-containers` "
            "installs podman, serves its API and builds the images"
        )
    yield client
    client.close()


def _source_hash() -> tuple[str, str]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("source_hash", REPO / ".ci" / "containers" / "source_hash.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LABEL, module.source_hash(REPO)


def _image_or_skip(client, tag: str, target: str):
    """The locally built image `tag`; skips when it is missing or was built from other source than this tree's."""
    import docker

    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        unavailable(f"image {tag} is not built here: `make {target}`")
    label, current = _source_hash()
    built_from = (image.labels or {}).get(label)
    if built_from is not None and built_from != current:
        unavailable(
            f"image {tag} was built from other source than this tree's ({label} {built_from[:12]}, the "
            f"tree's {current[:12]}): `make {target}`"
        )
    return image


@pytest.fixture(scope="session")
def component_image(docker_client) -> str:
    from kfp_ct.components._common.images import IMAGE

    _image_or_skip(docker_client, IMAGE, "image-cpu")
    return IMAGE


@pytest.fixture(scope="session")
def serving_image(docker_client) -> str:
    from kfp_ct.components._common.images import SERVING_IMAGE

    _image_or_skip(docker_client, SERVING_IMAGE, "image-serving")
    return SERVING_IMAGE


def open_to_all(path: Path) -> Path:
    """Lets the images' non-root user (uid 1000) write under `path`, as a pod's volume would."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(path.stat().st_mode | stat.S_IRWXU | stat.S_IRWXG | stat.S_IRWXO)
    return path


@pytest.fixture
def docker_local(component_image, tmp_path) -> Path:
    """kfp.local with the DockerRunner: each task runs in the component image, the pipeline root bind-mounted at the
    same path (kfp's docker_task_handler mounts only that, read-write)."""
    from kfp import local

    root = open_to_all(tmp_path / "pipeline_root")
    # host networking: a task can reach servers on this machine's loopback (an MLflow server, a GCS emulator)
    local.init(runner=local.DockerRunner(network_mode="host"), pipeline_root=str(root))
    return root
