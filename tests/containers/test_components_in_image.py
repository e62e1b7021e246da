"""Components run in the catalog's component image under kfp.local.DockerRunner: outputs land in the mounted
pipeline root as they do under the SubprocessRunner, and a failing task fails the run."""

import shutil

import pandas as pd
import pytest

from kfp_ct.components._common.images import IMAGE

pytestmark = pytest.mark.containers


def test_the_compiled_components_name_the_locally_built_image(component_image):
    from kfp_ct.components.ingest import ingest

    assert ingest.component_spec.implementation.container.image == IMAGE == component_image


def test_image_runs_as_a_non_root_user(docker_client, component_image):
    config = docker_client.images.get(component_image).attrs["Config"]
    assert config["User"] not in ("", "0", "root", "0:0")
    # Not `containers.run(remove=True)`: that follows the logs of a container which exits within milliseconds, and
    # podman 4.3 can leave such a stream open for ever (its log follower races the container's `died` event).
    container = docker_client.containers.run(
        component_image, ["sh", "-c", "id -u; command -v gcc cc pip3 || true"], detach=True, network_mode="host"
    )
    try:
        assert container.wait(timeout=120)["StatusCode"] == 0
        out = container.logs()
    finally:
        container.remove(force=True)
    uid, *tools = out.decode().split()
    assert uid == "1000"
    assert not [t for t in tools if t.endswith(("gcc", "/cc"))], f"a compiler is left in the image: {tools}"


def test_ingest_in_the_image(docker_local, shared_data, capfd):
    from kfp_ct.components.ingest import ingest

    source = docker_local / "inputs" / "elec2.csv"  # the container sees the pipeline root only
    source.parent.mkdir()
    shutil.copy(shared_data / "elec2" / "elec2.csv", source)

    task = ingest(source_uri=str(source))

    assert f"Found image '{IMAGE}'" in capfd.readouterr().out  # used as built here: nothing pulled
    dataset = task.outputs["dataset"]
    assert dataset.path.startswith(str(docker_local))
    frame = pd.read_parquet(dataset.path)
    assert frame.shape == (45312, 9)
    assert dataset.metadata["rows"] == 45312 and dataset.metadata["columns"] == 9
    assert dataset.metadata["source_uri"] == str(source)
    expected = pd.read_csv(shared_data / "elec2" / "elec2.csv")
    pd.testing.assert_frame_equal(frame, expected, check_dtype=False)


def test_a_failing_task_fails_the_run(docker_local):
    """The exit code crosses the container boundary (podman removes the container before kfp's `wait`)."""
    from kfp_ct.components.ingest import ingest

    missing = docker_local / "inputs" / "nowhere.csv"
    with pytest.raises(RuntimeError, match="ingest"):
        ingest(source_uri=str(missing))
    assert not list(docker_local.rglob("dataset"))
