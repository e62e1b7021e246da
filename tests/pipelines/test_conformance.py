"""The compiled YAML against what the minimum KFP backend (2.5, Kubeflow 1.10) accepts, read from released artifacts
and the backend's own rules (DESIGN.md, "The cluster we target").

- Platform spec: every task's Kubernetes config parses strictly with the proto of the released kfp-kubernetes 1.5.0
  (downloaded by pip into pytest's cache, loaded into a descriptor pool of its own: the installed kfp-kubernetes is
  newer and stays untouched). A field newer than that is dropped by backend 2.5-2.14.
- Null parameters: the API server refuses an explicit null for any parameter (`validatePipelineJobInputs`); an
  optional parameter with no default left out resolves to null, which the 2.5 driver passes only to an optional
  container input (`resolveInputs`: "the resolved input parameter is null"); a sub-DAG (dsl.If branch,
  sub-pipeline) input is never optional in what kfp compiles, and a skipped one is missing inside the sub-DAG.
"""

import ast
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Optional

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PIPELINE_FILES = sorted((REPO / "compiled").glob("*.yaml"))
KFP_KUBERNETES = "1.5.0"  # released with KFP 2.5 (Kubeflow 1.10)
PB2 = "kfp/kubernetes/kubernetes_executor_config_pb2.py"


def _pb2_source(cache: Path) -> str:
    """The generated proto module of the released package, from its wheel or sdist (downloaded once)."""
    archives = sorted(cache.glob(f"kfp*kubernetes-{KFP_KUBERNETES}*"))
    if not archives:
        command = [sys.executable, "-m", "pip", "download", f"kfp-kubernetes=={KFP_KUBERNETES}", "--no-deps"]
        done = subprocess.run([*command, "-d", str(cache)], capture_output=True, text=True)
        archives = sorted(cache.glob(f"kfp*kubernetes-{KFP_KUBERNETES}*"))
        if done.returncode or not archives:
            pytest.fail(f"could not download kfp-kubernetes=={KFP_KUBERNETES}: {done.stderr[-2000:]}")
    archive = archives[0]
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as wheel:
            return wheel.read(PB2).decode()
    with tarfile.open(archive) as sdist:
        member = next(m for m in sdist.getmembers() if m.name.endswith(PB2))
        return sdist.extractfile(member).read().decode()


@pytest.fixture(scope="session")
def executor_config(pytestconfig):
    """The message class `kfp_kubernetes.KubernetesExecutorConfig` of kfp-kubernetes 1.5.0, in a private pool."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, struct_pb2
    from kfp.pipeline_spec import pipeline_spec_pb2

    source = _pb2_source(pytestconfig.cache.mkdir(f"kfp-kubernetes-{KFP_KUBERNETES}"))
    serialized = next(
        node.args[0].value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile"
    )
    pool = descriptor_pool.DescriptorPool()

    def add(file):
        try:
            pool.FindFileByName(file.name)
        except KeyError:
            for dependency in file.dependencies:
                add(dependency)
            proto = descriptor_pb2.FileDescriptorProto()
            file.CopyToProto(proto)
            pool.Add(proto)

    add(struct_pb2.DESCRIPTOR)
    add(pipeline_spec_pb2.DESCRIPTOR)  # the dependency the 1.5.0 proto names (its messages are not checked here)
    pool.AddSerializedFile(serialized)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("kfp_kubernetes.KubernetesExecutorConfig"))


def _documents(path: Path) -> tuple[dict, dict]:
    documents = list(yaml.safe_load_all(path.read_text()))
    return documents[0], (documents[1] if len(documents) > 1 else {})


def platform_errors(platform: dict, message_class) -> list[str]:
    """Each executor whose Kubernetes config the given proto refuses, with the parser's reason."""
    from google.protobuf import json_format

    executors = platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})
    errors = []
    for name, config in executors.items():
        try:
            json_format.ParseDict(config, message_class(), ignore_unknown_fields=False)
        except json_format.ParseError as err:
            errors.append(f"{name}: {err}")
    return errors


def null_parameter_errors(spec: dict) -> list[str]:
    """Where a pipeline parameter that can resolve to null (optional, no default) reaches a sub-DAG or a container
    input that is not optional."""
    components = spec["components"]
    parameters = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    nullable = {name for name, p in parameters.items() if p.get("isOptional") and "defaultValue" not in p}
    errors = []
    for task_name, task in spec["root"]["dag"]["tasks"].items():
        component = components[task["componentRef"]["name"]]
        definitions = component.get("inputDefinitions", {}).get("parameters", {})
        for input_name, source in task.get("inputs", {}).get("parameters", {}).items():
            parameter = source.get("componentInputParameter")
            if parameter not in nullable:
                continue
            if "dag" in component:
                errors.append(f"'{parameter}' (no default) reaches the sub-DAG {task_name} as {input_name}")
            elif not definitions[input_name].get("isOptional"):
                errors.append(f"'{parameter}' (no default) reaches {task_name}.{input_name}, which is not optional")
    return errors


def test_the_files_are_there():
    names = {p.stem for p in PIPELINE_FILES}
    assert {"training_pipeline", "continuous_training_pipeline", "data_pipeline"} <= names


@pytest.mark.parametrize("path", PIPELINE_FILES, ids=lambda p: p.stem)
def test_platform_spec_parses_with_kfp_kubernetes_1_5(path, executor_config):
    _, platform = _documents(path)
    assert platform, f"{path.name} has no platform spec (credentials are set on every step)"
    errors = platform_errors(platform, executor_config)
    assert not errors, f"{path.name}: KFP 2.5 drops or refuses these Kubernetes settings:\n" + "\n".join(errors)


@pytest.mark.parametrize("path", PIPELINE_FILES, ids=lambda p: p.stem)
def test_no_null_parameter_reaches_a_required_input(path):
    spec, _ = _documents(path)
    errors = null_parameter_errors(spec)
    assert not errors, f"{path.name}: fails on KFP 2.5 when these are left unset:\n" + "\n".join(errors)


def test_the_oracle_refuses_a_field_newer_than_1_5(executor_config):
    """SecretAsEnv.optional came with kfp-kubernetes 2.15: the 1.5.0 proto must refuse it, or the check is void."""
    secret = {"secretName": "s", "keyToEnv": [{"secretKey": "K", "envVar": "K"}]}
    executors = {"exec-a": {"secretAsEnv": [secret]}, "exec-b": {"secretAsEnv": [{**secret, "optional": True}]}}
    platform = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}
    errors = platform_errors(platform, executor_config)
    assert len(errors) == 1 and errors[0].startswith("exec-b:") and "optional" in errors[0]


def test_the_null_check_finds_a_parameter_with_no_default_in_a_branch(tmp_path):
    from kfp import compiler, dsl

    @dsl.component
    def echo(text: str) -> str:
        return text

    @dsl.pipeline
    def pipeline(flag: bool = True, text: Optional[str] = None):
        with dsl.If(flag == True):  # noqa: E712 (a KFP condition)
            echo(text=text)

    compiler.Compiler().compile(pipeline, str(tmp_path / "pipeline.yaml"))
    errors = null_parameter_errors(_documents(tmp_path / "pipeline.yaml")[0])
    assert len(errors) == 1 and "'text'" in errors[0] and "sub-DAG" in errors[0]


def _gpu_steps(spec: dict) -> dict[str, dict]:
    """executor label -> its container, for every step of a torch or Keras trainer, and every step in the GPU image
    (evaluate, push and tune of those frameworks), whichever registry it comes from."""
    executors = spec["deploymentSpec"]["executors"]
    labels = {
        component["executorLabel"]
        for name, component in spec["components"].items()
        if name.startswith(("comp-train-torch", "comp-train-keras"))
    }
    labels |= {label for label, executor in executors.items() if "/kfp-ct-gpu:" in executor["container"]["image"]}
    return {label: executors[label]["container"] for label in labels}


@pytest.mark.parametrize("pipeline", ["training_pipeline", "continuous_training_pipeline"])
def test_gpu_trainers_and_tune_keep_their_accelerator(pipeline):
    spec, _ = _documents(REPO / "compiled" / f"{pipeline}.yaml")
    steps = _gpu_steps(spec)
    trainers = [label for label in steps if label.startswith(("exec-train-torch", "exec-train-keras"))]
    assert trainers, f"{pipeline} has no torch or Keras trainer"
    tuners = [label for label in steps if label.startswith("exec-tune")]
    assert len(tuners) == (pipeline == "training_pipeline"), f"{pipeline}: tune in the GPU image: {tuners}"
    for label in trainers + tuners:
        accelerator = steps[label].get("resources", {}).get("accelerator", {})
        assert (accelerator.get("resourceType"), accelerator.get("resourceCount")) == ("nvidia.com/gpu", "1"), (
            f"{pipeline}: {label} lost its GPU request: {steps[label].get('resources')}"
        )


def test_compile_places_gpu_steps_and_names_an_own_registry(tmp_path, executor_config):
    """`kfp-ct compile` with a registry, a node selector and two tolerations: every image moves to the registry, the
    GPU steps (only those) get the placement, and KFP 2.5's proto accepts it."""
    command = [sys.executable, "-m", "kfp_ct.pipelines.cli", "compile", "--out", str(tmp_path)]
    options = ["--image-registry", "registry.example.org/ml/", "--gpu-node-selector", "accelerator=nvidia-h100"]
    options += ["--gpu-toleration", "nvidia.com/gpu=present:NoSchedule", "--gpu-toleration", "dedicated:NoExecute"]
    subprocess.run([*command, *options], check=True, capture_output=True, text=True, cwd=tmp_path)
    for path in [*tmp_path.glob("*.yaml"), *tmp_path.glob("components/*.yaml")]:
        spec, platform = _documents(path)
        images = {executor["container"]["image"] for executor in spec["deploymentSpec"]["executors"].values()}
        assert images and all(image.startswith("registry.example.org/ml/kfp-ct") for image in images), images
        assert not platform_errors(platform, executor_config)
    spec, platform = _documents(tmp_path / "training_pipeline.yaml")
    gpu = set(_gpu_steps(spec))
    placed = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    expected_tolerations = [
        {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Exists", "effect": "NoExecute"},
    ]
    assert {label for label, config in placed.items() if "nodeSelector" in config} == gpu - {
        label for label in gpu if label.startswith(("exec-evaluate", "exec-push"))
    }
    for label, config in placed.items():
        if "nodeSelector" in config:
            assert config["nodeSelector"]["labels"] == {"accelerator": "nvidia-h100"}
            assert config["tolerations"] == expected_tolerations
        else:
            assert "tolerations" not in config, label


@pytest.mark.parametrize(
    "option,value", [("--gpu-node-selector", "accelerator"), ("--gpu-toleration", "key=value:NoScheduling")]
)
def test_compile_refuses_a_malformed_placement(option, value, tmp_path):
    from kfp_ct.pipelines import cli

    with pytest.raises(SystemExit, match="KEY"):
        cli.main(["compile", "--out", str(tmp_path), option, value])
    assert not list(tmp_path.iterdir())
