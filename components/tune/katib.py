"""The Katib backend: build a kubeflow.org/v1beta1 Experiment with the typed models of kubeflow-katib-api, check it
against Katib's own field schema and admission rules, submit it with the `kubernetes` client, wait for it, and read
its optimal trial. `write_manifests` renders the catalog's Experiment manifests (katib/<trainer>-experiment.yaml)
from the same builder.

Each trial is a batch/v1 Job running the catalog image:

    python -m kfp_ct.components.tune.trial --trainer ... --param NAME=${trialParameters.NAME} ...

which fits the trainer's core and prints `validation-<metric>=<value>` lines for Katib's StdOut metrics collector.
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Optional

from kfp_ct.components._common.kube import custom_objects_api
from kfp_ct.components.tune.results import EARLY_STOPPED, FAILED, KILLED, SUCCEEDED, SearchResult, TrialResult
from kfp_ct.components.tune.settings import (
    KATIB_ONLY_ALGORITHMS,
    LOCAL_ALGORITHMS,
    OBJECTIVE_TYPES,
    SearchSettings,
    check_settings,
)
from kfp_ct.components.tune.space import Parameter, parse_parameter, parse_search_space

GROUP, VERSION, PLURAL = "kubeflow.org", "v1beta1", "experiments"
API_VERSION = f"{GROUP}/{VERSION}"
CONTAINER = "training-container"
SUCCESS_CONDITION = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
FAILURE_CONDITION = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
GPU_TRAINERS = ("torch", "keras")
# Katib suggestion services that take a `random_state` setting (sobol's takes none).
SEEDED_ALGORITHMS = ("random", "grid", "tpe", "multivariate-tpe", "cmaes", "bayesianoptimization")
# Katib's completion reasons, as the local backend names why a search stopped.
KATIB_REASONS = {
    "ExperimentGoalReached": "goal",
    "ExperimentMaxTrialsReached": "max_trial_count",
    "ExperimentFailed": "max_failed_trial_count",
    "ExperimentSuggestionEndReached": "suggestion_end",
}
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_SUBSTITUTION = re.compile(r"\$\{trialParameters\.[^}]+\}")

# Placeholders in the committed manifests: edit them, or keep them and copy your data there.
MANIFEST_DATA = {
    "classification": {
        "train_uri": "gs://YOUR-BUCKET/kfp-ct/train.parquet",
        "featurizer_uri": "gs://YOUR-BUCKET/kfp-ct/featurizer",
        "target_column": "class",
    },
}


PACKAGED_SCHEMA = Path(__file__).resolve().parent / "katib_v1beta1_swagger.json.gz"


def schema_path() -> Path:
    """Katib's v1beta1 swagger (pkg/apis/v1beta1/swagger.json at v0.19.0): $KFP_CT_KATIB_SCHEMA, else the gzip'd
    copy packaged beside this module (a test keeps it identical to ../shared/schemas/katib/)."""
    return Path(os.environ["KFP_CT_KATIB_SCHEMA"]) if os.environ.get("KFP_CT_KATIB_SCHEMA") else PACKAGED_SCHEMA


# --- building ----------------------------------------------------------------------------------------------------


def trial_command(
    trainer: str,
    parameters: list[Parameter],
    train_uri: str,
    featurizer_uri: str,
    target_column: Optional[str],
    task: Optional[str],
    seed: int,
    options: dict,
    hyperparameters: dict,
) -> list[str]:
    """The trial container's command line, with `${trialParameters.NAME}` for each searched parameter."""
    command = [
        "python",
        "-m",
        "kfp_ct.components.tune.trial",
        "--trainer",
        trainer,
        "--train-uri",
        train_uri,
        "--featurizer-uri",
        featurizer_uri,
        "--seed",
        str(seed),
    ]
    if target_column:
        command += ["--target-column", target_column]
    if task:
        command += ["--task", task]
    for name, value in options.items():
        command += ["--option", f"{name}={value}"]
    if hyperparameters:
        command += ["--hyperparameters", json.dumps(hyperparameters, sort_keys=True)]
    for p in parameters:
        command += ["--param", f"{p.name}=${{trialParameters.{p.name}}}", "--param-type", f"{p.name}={p.type}"]
    return command


def storage_environment(*uris: str) -> dict:
    """The container fields a trial needs to read `uris`: for s3:// the AWS_* variables of the Secret
    storage.S3_SECRET (as push's s3-storage-access manifest writes it); for minio:// the keys of KFP's
    mlpipeline-minio-artifact Secret; nothing for paths and gs:// (the pod's service account)."""
    from kfp_ct.components._common import storage

    schemes = {storage.check_scheme(uri, "URI") for uri in uris}
    fields: dict = {}
    if "s3" in schemes:
        fields["envFrom"] = [{"secretRef": {"name": storage.S3_SECRET}}]
    if "minio" in schemes:
        fields["env"] = [
            {"name": name, "valueFrom": {"secretKeyRef": {"name": storage.MINIO_SECRET, "key": key}}}
            for name, key in (("MINIO_ACCESS_KEY", "accesskey"), ("MINIO_SECRET_KEY", "secretkey"))
        ]
    return fields


def build_experiment(
    *,
    name: str,
    trainer: str,
    settings: SearchSettings,
    train_uri: str,
    featurizer_uri: str,
    target_column: Optional[str] = None,
    task: Optional[str] = None,
    additional_metric_names: Optional[list[str]] = None,
    namespace: str = "kubeflow-user-example-com",
    options: Optional[dict] = None,
    hyperparameters: Optional[dict] = None,
    image: Optional[str] = None,
    gpu: Optional[bool] = None,
    resources: Optional[dict] = None,
):
    """A V1beta1Experiment whose trials run the catalog's trial module on the trainer's core; `settings` come
    checked (for Katib: `check_settings(..., local=False)`)."""
    from kubeflow_katib_api import models as m

    from kfp_ct.components._common.images import GPU_IMAGE, IMAGE

    parameters, algorithm, stopping = list(settings.parameters), settings.algorithm, settings.early_stopping
    objective_metric_name, objective_type = settings.objective_metric_name, settings.objective_type
    if algorithm in ("hyperband", "pbt"):
        raise ValueError(
            f"algorithm '{algorithm}' needs Katib algorithm settings (and, for pbt, a checkpoint "
            f"volume) that this builder does not take: start from katib/{trainer}-experiment.yaml and "
            "set spec.algorithm yourself"
        )
    if not _NAME.match(name) or len(name) > 63:
        raise ValueError(
            f"Experiment name '{name}' must be lower-case letters, digits and '-', start with a letter, "
            "end with a letter or digit, and be at most 63 characters"
        )
    gpu = trainer in GPU_TRAINERS if gpu is None else gpu
    command = trial_command(
        trainer,
        parameters,
        train_uri,
        featurizer_uri,
        target_column,
        task,
        settings.seed,
        options or {},
        hyperparameters or {},
    )
    limits = dict(resources or {"cpu": "2", "memory": "4Gi"})
    if gpu:
        limits.setdefault("nvidia.com/gpu", "1")
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "backoffLimit": 0,  # a failed trial is Katib's to count, not the Job's to retry
            "template": {
                "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": CONTAINER,
                            "image": image or (GPU_IMAGE if gpu else IMAGE),
                            "command": command,
                            "resources": {"limits": limits},
                            **storage_environment(train_uri, featurizer_uri),
                        }
                    ],
                },
            },
        },
    }
    additional = [n for n in (additional_metric_names or []) if n != objective_metric_name]
    spec = m.V1beta1ExperimentSpec(
        objective=m.V1beta1ObjectiveSpec(
            type=objective_type,
            objective_metric_name=objective_metric_name,
            goal=settings.objective_goal,
            additional_metric_names=additional or None,
            metric_strategies=[
                m.V1beta1MetricStrategy(
                    name=objective_metric_name, value="max" if objective_type == "maximize" else "min"
                )
            ],
        ),
        algorithm=m.V1beta1AlgorithmSpec(
            algorithm_name=algorithm,
            algorithm_settings=[m.V1beta1AlgorithmSetting(name="random_state", value=str(settings.seed))]
            if algorithm in SEEDED_ALGORITHMS
            else None,
        ),
        early_stopping=m.V1beta1EarlyStoppingSpec(
            algorithm_name=stopping["algorithmName"],
            algorithm_settings=[
                m.V1beta1EarlyStoppingSetting(name=k, value=str(v)) for k, v in stopping.items() if k != "algorithmName"
            ],
        )
        if stopping
        else None,
        max_trial_count=settings.max_trial_count,
        parallel_trial_count=settings.parallel_trial_count,
        max_failed_trial_count=settings.max_failed_trial_count,
        metrics_collector_spec=m.V1beta1MetricsCollectorSpec(collector=m.V1beta1CollectorSpec(kind="StdOut")),
        parameters=[m.V1beta1ParameterSpec.from_dict(p.to_katib()) for p in parameters],
        trial_template=m.V1beta1TrialTemplate(
            primary_container_name=CONTAINER,
            success_condition=SUCCESS_CONDITION,
            failure_condition=FAILURE_CONDITION,
            trial_parameters=[
                m.V1beta1TrialParameterSpec(
                    name=p.name, reference=p.name, description=f"{p.type} hyperparameter {p.name}"
                )
                for p in parameters
            ],
            trial_spec=job,
        ),
    )
    return m.V1beta1Experiment(
        api_version=API_VERSION,
        kind="Experiment",
        metadata=m.IoK8sApimachineryPkgApisMetaV1ObjectMeta(
            name=name, namespace=namespace, labels={"app.kubernetes.io/part-of": "kfp-ct", "kfp-ct/trainer": trainer}
        ),
        spec=spec,
    )


# --- validation --------------------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _schema(path: str) -> dict:
    """A JSON Schema for an Experiment from Katib's swagger: its definitions, strict about unknown fields in Katib's
    own types; Kubernetes types it references but does not define (ObjectMeta, Container, Time, the unstructured
    trial spec) are left open."""
    import gzip

    raw = Path(path).read_bytes()
    swagger = json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    definitions = copy.deepcopy(swagger["definitions"])
    for definition in definitions.values():
        if definition.get("type") == "object" and "properties" in definition:
            definition.setdefault("additionalProperties", False)
    referenced = set(re.findall(r'"#/definitions/([^"]+)"', json.dumps(definitions)))
    for missing in referenced - set(definitions):
        definitions[missing] = {"type": "object"} if missing != "v1.Time" else {"type": "string"}
    return {"$ref": "#/definitions/v1beta1.Experiment", "definitions": definitions}


def validate_experiment(experiment: dict, schema_file: Optional[str] = None) -> None:
    """Checks an Experiment dict against Katib's v1beta1 field schema (jsonschema, $refs resolved) and the rules of
    Katib's admission webhook that can be checked without a cluster. Raises ValueError naming every problem."""
    import jsonschema

    path = str(schema_file or schema_path())
    if not Path(path).is_file():
        raise FileNotFoundError(f"Katib schema not found: {path} (set KFP_CT_KATIB_SCHEMA)")
    validator = jsonschema.Draft4Validator(_schema(path))
    problems = [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in sorted(validator.iter_errors(experiment), key=lambda e: list(map(str, e.absolute_path)))
    ]
    problems += _admission_problems(experiment)
    if problems:
        name = (experiment.get("metadata") or {}).get("name", "?")
        raise ValueError(f"Experiment '{name}' is not valid for Katib v1beta1:\n  " + "\n  ".join(problems))


def _admission_problems(experiment: dict) -> list[str]:
    problems = []
    if experiment.get("apiVersion") != API_VERSION or experiment.get("kind") != "Experiment":
        problems.append(f"apiVersion/kind must be {API_VERSION}/Experiment")
    name = (experiment.get("metadata") or {}).get("name", "")
    if not _NAME.match(name or ""):
        problems.append(f"metadata.name '{name}' must match {_NAME.pattern}")
    spec = experiment.get("spec") or {}
    objective = spec.get("objective") or {}
    if objective.get("type") not in OBJECTIVE_TYPES:
        problems.append("spec.objective.type must be maximize or minimize")
    if not objective.get("objectiveMetricName"):
        problems.append("spec.objective.objectiveMetricName is missing")
    if objective.get("objectiveMetricName") in (objective.get("additionalMetricNames") or []):
        problems.append("spec.objective.additionalMetricNames must not contain the objective metric")
    algorithm = (spec.get("algorithm") or {}).get("algorithmName")
    if algorithm not in LOCAL_ALGORITHMS + KATIB_ONLY_ALGORITHMS:
        problems.append(f"spec.algorithm.algorithmName '{algorithm}' is not a Katib algorithm")
    counts = {k: spec.get(k) for k in ("maxTrialCount", "parallelTrialCount", "maxFailedTrialCount")}
    if isinstance(counts["maxTrialCount"], int):
        for key in ("parallelTrialCount", "maxFailedTrialCount"):
            if isinstance(counts[key], int) and counts[key] > counts["maxTrialCount"]:
                problems.append(f"spec.{key} must not exceed spec.maxTrialCount")
    if not spec.get("parameters"):
        problems.append("spec.parameters is missing or empty")
    for parameter in spec.get("parameters") or []:
        try:
            parse_parameter(parameter)
        except ValueError as err:
            problems.append(f"spec.parameters: {err}")
    template = spec.get("trialTemplate") or {}
    job = template.get("trialSpec") or {}
    required = ["primaryContainerName", "trialParameters", "trialSpec"]
    if job.get("kind") != "Job":  # Katib's defaulting webhook fills both conditions in for a batch Job
        required += ["successCondition", "failureCondition"]
    for key in required:
        if not template.get(key):
            problems.append(f"spec.trialTemplate.{key} is missing")
    trial_spec = json.dumps(template.get("trialSpec") or {})
    names = {p.get("name") for p in spec.get("parameters") or [] if isinstance(p, dict)}
    for trial_parameter in template.get("trialParameters") or []:
        tp_name, reference = trial_parameter.get("name", ""), trial_parameter.get("reference", "")
        if reference not in names:
            problems.append(f"trialParameter '{tp_name}' references '{reference}', which is not in spec.parameters")
        placeholder = f"${{trialParameters.{tp_name}}}"
        if placeholder not in trial_spec:
            problems.append(f"trialParameter '{tp_name}' is not used in the trialSpec")
        trial_spec = trial_spec.replace(placeholder, "test-value")
    for leftover in sorted(set(_SUBSTITUTION.findall(trial_spec))):
        problems.append(f"{leftover} in the trialSpec is not a declared trialParameter")
    if job.get("apiVersion") != "batch/v1" or job.get("kind") != "Job":
        problems.append("spec.trialTemplate.trialSpec must be a batch/v1 Job")
    pod = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    if (job.get("metadata") or {}).get("name") or (job.get("metadata") or {}).get("namespace"):
        problems.append("the trialSpec must not set metadata.name or metadata.namespace")
    containers = [c.get("name") for c in pod.get("containers") or []]
    if template.get("primaryContainerName") not in containers:
        problems.append(
            f"primaryContainerName '{template.get('primaryContainerName')}' is not a container of the "
            f"Job (containers: {containers})"
        )
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):
        problems.append("the Job's pod restartPolicy must be Never or OnFailure")
    collector = ((spec.get("metricsCollectorSpec") or {}).get("collector") or {}).get("kind", "StdOut")
    if collector not in ("StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom", "None", "Push"):
        problems.append(f"unknown metrics collector kind '{collector}'")
    return problems


def experiment_dict(experiment) -> dict:
    """The Experiment as the plain dict that kubectl and the API server take."""
    return experiment.to_dict() if hasattr(experiment, "to_dict") else dict(experiment)


# --- submitting and waiting --------------------------------------------------------------------------------------


def conditions(experiment: dict) -> dict[str, dict]:
    """The Experiment's status conditions that are True, by type."""
    found = {}
    for condition in (experiment.get("status") or {}).get("conditions") or []:
        if str(condition.get("status")) == "True":
            found[condition.get("type")] = condition
    return found


def submit_and_wait(
    experiment: dict,
    api=None,
    timeout: float = 6 * 3600,
    poll_seconds: float = 15,
    log: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Creates the Experiment, waits until it Succeeded or Failed, and returns the Experiment as last read.

    Raises TimeoutError (naming the Experiment, which is left running) when it is not done within `timeout`.
    """
    api = api or custom_objects_api()
    namespace, name = experiment["metadata"]["namespace"], experiment["metadata"]["name"]
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, experiment)
    log(f"created Experiment {namespace}/{name}")
    deadline = time.monotonic() + timeout
    last = None
    while True:
        current = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        done = conditions(current)
        status = current.get("status") or {}
        summary = (status.get("trialsSucceeded", 0), status.get("trialsFailed", 0), status.get("trialsRunning", 0))
        if summary != last:
            log(f"Experiment {name}: {summary[0]} succeeded, {summary[1]} failed, {summary[2]} running")
            last = summary
        if "Succeeded" in done or "Failed" in done:
            return current
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"Experiment {namespace}/{name} did not finish within {timeout:.0f} s; it is still "
                f"there: kubectl -n {namespace} get experiment {name}"
            )
        sleep(poll_seconds)


def read_result(experiment: dict, parameters: list[Parameter]) -> SearchResult:
    """The search result of a finished Experiment: its optimal trial (typed parameters, objective value, metrics),
    and its trial counts as TrialResults without parameters."""
    spec, status = experiment.get("spec") or {}, experiment.get("status") or {}
    objective = spec.get("objective") or {}
    metric_name, objective_type = objective.get("objectiveMetricName"), objective.get("type", "maximize")
    done = conditions(experiment)
    state = "Succeeded" if "Succeeded" in done else "Failed" if "Failed" in done else "Running"
    reason = KATIB_REASONS.get((done.get(state) or {}).get("reason", ""), (done.get(state) or {}).get("reason", state))
    optimal = status.get("currentOptimalTrial") or {}
    by_name = {p.name: p for p in parameters}
    best = None
    if optimal.get("bestTrialName") and optimal.get("parameterAssignments"):
        texts = {a["name"]: str(a["value"]) for a in optimal["parameterAssignments"]}
        params = {n: (by_name[n].parse(t) if n in by_name else t) for n, t in texts.items()}
        metrics, value = {}, None
        strategy = "max" if objective_type == "maximize" else "min"
        for metric in (optimal.get("observation") or {}).get("metrics") or []:
            for key in (strategy, "latest"):
                try:
                    number = float(metric.get(key))
                except (TypeError, ValueError):
                    continue
                metrics[metric["name"]] = [number]
                if metric["name"] == metric_name:
                    value = number
                break
        if value is not None:
            best = TrialResult(
                number=0,
                assignments=texts,
                params=params,
                state=SUCCEEDED,
                value=value,
                metrics=metrics,
                name=optimal["bestTrialName"],
            )
    trials = []
    for kind, key in (
        (SUCCEEDED, "trialsSucceeded"),
        (FAILED, "trialsFailed"),
        (EARLY_STOPPED, "trialsEarlyStopped"),
        (KILLED, "trialsKilled"),
    ):
        trials += [
            TrialResult(number=len(trials) + i, assignments={}, params={}, state=kind)
            for i in range(int(status.get(key) or 0))
        ]
    result = SearchResult(trials, best, reason, metric_name, objective_type)
    if state == "Failed" and best is None:
        message = (done.get("Failed") or {}).get("message", "")
        raise RuntimeError(
            f"Katib Experiment {experiment['metadata']['name']} failed ({reason}: {message}) with "
            f"no trial reporting {metric_name}: {status.get('trialsFailed', 0)} trial(s) failed; see "
            f"kubectl -n {experiment['metadata'].get('namespace')} get trials"
        )
    return result


def run_experiment(
    experiment,
    parameters: list[Parameter],
    api=None,
    timeout: float = 6 * 3600,
    poll_seconds: float = 15,
    log: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> SearchResult:
    """Validates, submits and waits for an Experiment; returns its result."""
    body = experiment_dict(experiment)
    validate_experiment(body)
    finished = submit_and_wait(body, api, timeout, poll_seconds, log, sleep)
    return read_result(finished, parameters)


def experiment_name(trainer: str) -> str:
    return f"kfp-ct-{trainer}-{secrets.token_hex(4)}"


# --- manifests ---------------------------------------------------------------------------------------------------


def manifest_experiment(trainer: str) -> dict:
    """The catalog's Experiment for `trainer`: its default search space, tpe, validation-roc_auc on a
    classification dataset whose URIs are placeholders."""
    from kfp_ct.components.tune import defaults

    data = MANIFEST_DATA["classification"]
    options = defaults.default_options(trainer)
    settings = check_settings(
        parameters=parse_search_space(defaults.default_search_space(trainer, options)),
        objective_metric_name="validation-roc_auc",
        objective_type="maximize",
        algorithm="tpe",
        max_trial_count=12,
        parallel_trial_count=2,
        max_failed_trial_count=3,
        early_stopping={"algorithmName": "medianstop"} if trainer in GPU_TRAINERS else None,
        seed=0,
        local=False,
    )
    experiment = build_experiment(
        name=f"kfp-ct-{trainer}",
        trainer=trainer,
        settings=settings,
        train_uri=data["train_uri"],
        featurizer_uri=data["featurizer_uri"],
        target_column=data["target_column"],
        task="classification",
        additional_metric_names=defaults.additional_metric_names(trainer, "classification", "validation-roc_auc"),
        namespace="kubeflow-user-example-com",
        options=options,
    )
    body = experiment_dict(experiment)
    validate_experiment(body)
    return body


def render_manifest(trainer: str) -> str:
    import yaml

    header = (
        f"# Generated by kfp_ct.components.tune.katib.write_manifests (make manifests): do not edit here.\n"
        f"# Katib Experiment tuning the catalog's {trainer} trainer; see katib/README.md.\n"
    )
    return header + yaml.safe_dump(manifest_experiment(trainer), sort_keys=False, width=120)


def write_manifests(directory: str | os.PathLike) -> list[Path]:
    """Writes katib/<trainer>-experiment.yaml for every trainer (validated), atomically; returns the paths."""
    from kfp_ct.components._common.datasets import write_text_files
    from kfp_ct.components.tune.trial import TRAINERS

    return write_text_files(directory, {f"{trainer}-experiment.yaml": render_manifest(trainer) for trainer in TRAINERS})


if __name__ == "__main__":  # python -m kfp_ct.components.tune.katib [directory]: what `make manifests` runs
    import sys

    for written_path in write_manifests(sys.argv[1] if len(sys.argv) > 1 else "katib"):
        print(f"wrote {written_path}")
