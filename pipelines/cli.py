"""The `kfp-ct` command line: the catalog, compilation, local runs, serving, and runs on a cluster."""

from __future__ import annotations

import argparse
import json
import os
import sys


def parse_params(pairs: list[str], pipeline) -> dict:
    """`NAME=VALUE` pairs typed by the pipeline's inputs: strings stay as given, everything else is JSON."""
    inputs = pipeline.component_spec.inputs or {}
    arguments = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--param takes NAME=VALUE, got '{pair}'")
        if name not in inputs:
            raise SystemExit(f"{pipeline.name} has no parameter '{name}'; its parameters: {', '.join(inputs)}")
        if inputs[name].type == "String":
            arguments[name] = value
        else:
            try:
                arguments[name] = json.loads(value)
            except json.JSONDecodeError:
                raise SystemExit(f"--param {name}: expected a {inputs[name].type} in JSON, got '{value}'") from None
    return arguments


def preflight(pipeline, arguments: dict, *, reach_registry: bool) -> None:
    """Checks a run's parameters before it is started (the preflight component's checks), with the pipeline's
    defaults for those not given; the registry only when `reach_registry` (a local run: a cluster's registry is
    seldom reachable from where runs are submitted, and the run's own preflight step checks it there)."""
    from kfp_ct.components.preflight.core import preflight as check

    inputs = pipeline.component_spec.inputs or {}
    values = {name: spec.default for name, spec in inputs.items()} | arguments
    given = {name: values[name] for name in inputs if name in values}
    registry = "skip"
    if reach_registry and "model_name" in inputs:
        registry = "existing" if "current_uri" in inputs else "create"
    try:
        check(
            data_uris={name: given.get(name) for name in ("source_uri", "current_uri", "reference_uri")},
            target_column=given.get("target_column"),
            model_name=given.get("model_name"),
            task=given.get("task"),
            framework=given.get("framework"),
            thresholds=given.get("thresholds"),
            push_target=given.get("push_target"),
            storage_uri=given.get("storage_uri"),
            tracking_uri=given.get("tracking_uri"),
            registry=registry,
        )
    except ValueError as err:
        raise SystemExit(f"{pipeline.name}: {err}") from None


def _pipeline(name: str):
    from kfp_ct.pipelines import PIPELINES

    if name not in PIPELINES:
        raise SystemExit(f"unknown pipeline '{name}'; the pipelines: {', '.join(PIPELINES)}")
    return PIPELINES[name]


def cmd_components(args) -> None:
    from kfp_ct import components

    for name in components.__all__:
        description = (getattr(components, name).description or "").strip().splitlines()[0]
        print(f"{name:<16} {description}")


def compile_environment(args) -> dict[str, str]:
    """The environment variables that carry `compile`'s image registry and GPU placement to the modules that build
    the components and pipelines (checked here, so that a typo fails before anything is written)."""
    from kfp_ct.pipelines.steps import parse_node_selector, parse_toleration

    try:
        for text in args.gpu_node_selector:
            parse_node_selector(text)
        for text in args.gpu_toleration:
            parse_toleration(text)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    settings = {
        "KFP_CT_IMAGE_REGISTRY": args.image_registry,
        "KFP_CT_GPU_NODE_SELECTOR": ",".join(args.gpu_node_selector),
        "KFP_CT_GPU_TOLERATIONS": ",".join(args.gpu_toleration),
    }
    return {name: value for name, value in settings.items() if value}


def cmd_compile(args) -> None:
    from kfp_ct.pipelines import MODULES

    settings = compile_environment(args)
    if settings and {"kfp_ct.components._common.images", *MODULES.values()} & set(sys.modules):
        raise SystemExit(f"{', '.join(settings)}: read when the catalog is built, which this process has done already")
    os.environ.update(settings)
    from kfp_ct.pipelines.compile import compile_all, write_component_readmes, write_readme_table

    for path in compile_all(args.out):
        print(path)
    if args.readme:
        write_readme_table(args.readme)
        print(f"{args.readme}: components table")
        for path in write_component_readmes():
            print(path)


def cmd_run(args) -> None:
    from kfp_ct.pipelines.local_run import run_local

    pipeline = _pipeline(args.pipeline)
    arguments = parse_params(args.param, pipeline)
    if args.as_of:
        if "as_of" not in (pipeline.component_spec.inputs or {}):
            raise SystemExit(f"{pipeline.name} has no as_of parameter: --as-of is for a windowed pipeline")
        arguments["as_of"] = args.as_of
    preflight(pipeline, arguments, reach_registry=True)
    try:
        run_local(pipeline, arguments, args.root, verbose=args.verbose)
    except RuntimeError:
        raise SystemExit(1) from None  # the console already said which task failed, why, and where the log is


def cmd_backfill(args) -> None:
    from kfp_ct.pipelines.backfill import backfill

    pipeline = _pipeline(args.pipeline)
    arguments = parse_params(args.param, pipeline)
    preflight(pipeline, arguments, reach_registry=True)
    try:
        backfill(pipeline, arguments, args.start, args.end, args.every, args.root, verbose=args.verbose)
    except ValueError as err:
        raise SystemExit(f"backfill: {err}") from None
    except RuntimeError:
        raise SystemExit(1) from None  # the console already said which task failed, why, and where the log is


def _on_cluster(args, start) -> str:
    """Calls `start(kfp_client)`; the API server's refusal (a parameter of the wrong type, a missing or rejected
    credential) becomes one line naming the server and its message."""
    from kfp_server_api import ApiException

    from kfp_ct.pipelines import remote

    where = args.host or "the cluster's KFP API server (in-cluster)"
    try:
        return start(remote.client(args.host))
    except ValueError as err:
        raise SystemExit(str(err)) from None
    except ApiException as err:
        try:
            message = json.loads(err.body).get("message", err.body)
        except (TypeError, ValueError):
            message = err.body or err.reason
        raise SystemExit(f"{where} refused the request ({err.status} {err.reason}): {message}") from None


def cmd_report(args) -> None:
    from kfp_ct.pipelines.report import rebuild

    print(rebuild(args.root))


def cmd_submit(args) -> None:
    from kfp_ct.pipelines import remote

    pipeline = _pipeline(args.pipeline)
    arguments = parse_params(args.param, pipeline)
    preflight(pipeline, arguments, reach_registry=False)
    run_id = _on_cluster(
        args,
        lambda kfp_client: remote.submit(
            kfp_client,
            pipeline,
            arguments,
            experiment=args.experiment,
            run_name=args.run_name,
            namespace=args.namespace,
        ),
    )
    print(f"run {run_id} of {pipeline.name} started on {args.host or 'the cluster'}")


def cmd_schedule(args) -> None:
    from kfp_ct.pipelines import remote

    pipeline = _pipeline(args.pipeline)
    arguments = parse_params(args.param, pipeline)
    preflight(pipeline, arguments, reach_registry=False)
    recurring_id = _on_cluster(
        args,
        lambda kfp_client: remote.schedule(
            kfp_client,
            pipeline,
            arguments,
            cron=args.cron,
            job_name=args.job_name,
            experiment=args.experiment,
            namespace=args.namespace,
        ),
    )
    print(f"recurring run {recurring_id} of {pipeline.name} on '{args.cron}' (one at a time, no catch-up)")


def cmd_serve(args) -> None:
    from kfp_ct.components.push.server import serve

    serve(args.model_uri, model_name=args.name, port=args.port, host=args.host, capture=args.capture)


def cmd_capture_sink(args) -> None:
    from kfp_ct.components.push.capture_sink import main

    main(args.options)


def cmd_demo(args) -> None:
    from kfp_ct.pipelines.demo import run_demo

    try:
        run_demo(args.root, verbose=args.verbose)
    except RuntimeError:
        raise SystemExit(1) from None  # the console already said which task failed, why, and where the log is


def cmd_manifests(args) -> None:
    from kfp_ct.components.push.manifests import write_manifests as write_kserve
    from kfp_ct.components.tune.katib import write_manifests as write_katib
    from kfp_ct.pipelines.cluster import write_manifests as write_cluster

    for path in [*write_kserve(args.kserve), *write_katib(args.katib), *write_cluster(args.cluster)]:
        print(path)


def cmd_secret(args) -> None:
    from kfp_ct.pipelines.cluster import secret_manifest

    try:
        print(secret_manifest(args.namespace, os.environ), end="")
    except ValueError as err:
        raise SystemExit(str(err)) from None


def _delivery(operation):
    """Runs a delivery operation; a refusal (nothing changed) or a failed check becomes one line and exit code 1."""
    from kfp_ct.components.push.core import InfraValidationError
    from kfp_ct.components.push.rollout import RolloutError

    try:
        return operation()
    except (ValueError, LookupError, ConnectionError, FileNotFoundError, InfraValidationError, RolloutError) as err:
        raise SystemExit(f"{type(err).__name__}: {err}") from None


def cmd_promote(args) -> None:
    from kfp_ct.components.push.manifests import Resources
    from kfp_ct.pipelines import delivery

    result = _delivery(
        lambda: delivery.promote(
            args.model,
            version=args.version,
            force=args.force,
            tracking_uri=args.tracking_uri,
            target=args.target,
            storage_uri=args.storage_uri,
            namespace=args.namespace,
            canary_traffic_percent=args.canary_traffic_percent,
            deployment_mode=args.deployment_mode,
            resources=Resources(args.cpu_request, args.memory_request, args.cpu_limit, args.memory_limit, args.gpus),
            min_replicas=args.min_replicas,
            max_replicas=args.max_replicas,
            rollout_timeout_s=args.rollout_timeout_s,
            canary_bake_s=args.canary_bake_s,
            canary_rows_uri=args.canary_rows_uri,
            canary_max_error_rate=args.canary_max_error_rate,
            canary_max_latency_ratio=args.canary_max_latency_ratio,
            canary_max_prediction_shift=args.canary_max_prediction_shift,
            capture_url=args.capture_url,
        )
    )
    print(f"{args.model} version {result.version} is the champion (previous: {result.previous_champion}): {result.url}")


def cmd_reject(args) -> None:
    from kfp_ct.pipelines import delivery

    outcome = _delivery(
        lambda: delivery.reject(args.model, version=args.version, reason=args.reason, tracking_uri=args.tracking_uri)
    )
    cleared = "; the challenger alias is removed" if outcome["cleared_challenger"] else ""
    print(f"{args.model} version {outcome['version']} rejected: {outcome['reason']}{cleared}")


def cmd_rollback(args) -> None:
    from kfp_ct.pipelines import delivery

    _delivery(
        lambda: delivery.rollback(
            args.model,
            tracking_uri=args.tracking_uri,
            namespace=args.namespace,
            rollout_timeout_s=args.rollout_timeout_s,
        )
    )


def cmd_status(args) -> None:
    from kfp_ct.pipelines import delivery

    report = _delivery(lambda: delivery.status(args.model, tracking_uri=args.tracking_uri, namespace=args.namespace))
    print(json.dumps(report, indent=1) if args.json else delivery.format_status(report))


def add_delivery_commands(commands) -> None:
    """promote, reject, rollback and status (kfp_ct.pipelines.delivery)."""
    from kfp_ct.components.push.core import DEFAULT_STORAGE_URI, TARGETS

    def subcommand(name, func, help_text, namespace_help=None):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("model", help="the registered model (and InferenceService) name")
        sub.add_argument("--tracking-uri", help="the MLflow registry (default: MLFLOW_TRACKING_URI, else ./mlflow.db)")
        if namespace_help:
            sub.add_argument("--namespace", "-n", help=namespace_help)
        sub.set_defaults(func=func)
        return sub

    promote = subcommand(
        "promote",
        cmd_promote,
        "push a version (default: the challenger) as a pipeline run would: publish, infra-validate, roll out, champion",
    )
    promote.add_argument("--version", help="the registered version (default: the one the challenger alias names)")
    promote.add_argument(
        "--force", action="store_true", help="promote a version evaluate did not bless, or one that was rejected"
    )
    promote.add_argument("--target", choices=TARGETS, default="local")
    promote.add_argument("--storage-uri", default=DEFAULT_STORAGE_URI, help="where versions are published")
    promote.add_argument("--namespace", "-n", default="kubeflow-user-example-com")
    promote.add_argument("--canary-traffic-percent", type=int, default=10)
    promote.add_argument("--deployment-mode", default="Serverless")
    promote.add_argument("--cpu-request", default="500m")
    promote.add_argument("--memory-request", default="1Gi")
    promote.add_argument("--cpu-limit", default="2")
    promote.add_argument("--memory-limit", default="2Gi")
    promote.add_argument("--gpus", type=int, default=0, help="nvidia.com/gpu per predictor replica")
    promote.add_argument("--min-replicas", type=int, default=1)
    promote.add_argument("--max-replicas", type=int, default=3)
    promote.add_argument("--rollout-timeout-s", type=float, default=600)
    promote.add_argument("--canary-bake-s", type=float, default=0, help="judge the canary on replayed rows this long")
    promote.add_argument(
        "--canary-rows-uri", default="", help="the rows to replay: a Parquet dataset, e.g. the model's captured traffic"
    )
    promote.add_argument("--canary-max-error-rate", type=float, default=0.01)
    promote.add_argument("--canary-max-latency-ratio", type=float, default=1.5)
    promote.add_argument("--canary-max-prediction-shift", type=float, default=0.1)
    promote.add_argument("--capture-url", default="", help="the capture sink's URL (KServe's logger)")

    reject = subcommand("reject", cmd_reject, "turn a version down: record why, and remove its challenger alias")
    reject.add_argument("--version", required=True)
    reject.add_argument("--reason", required=True, help="why (recorded as the version's tag kfp_ct.rejected)")

    rollback = subcommand(
        "rollback",
        cmd_rollback,
        "make the previous champion the champion again",
        "also set this namespace's InferenceService back to the previous champion's published copy",
    )
    rollback.add_argument("--rollout-timeout-s", type=float, default=600)

    status = subcommand(
        "status",
        cmd_status,
        "versions, aliases, metrics and blessing rules, champion history (and the live traffic split)",
        "also show this namespace's InferenceService and its traffic split",
    )
    status.add_argument("--json", action="store_true", help="print the report as JSON")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kfp-ct", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("components", help="list the catalog").set_defaults(func=cmd_components)

    compile_parser = commands.add_parser("compile", help="compile every component and pipeline into YAML")
    compile_parser.add_argument("--out", default="compiled")
    compile_parser.add_argument(
        "--readme", help="also refresh the components table in this README, and each components/<name>/README.md"
    )
    compile_parser.add_argument(
        "--image-registry", help="the registry that hosts the catalog's images (`make image push REGISTRY=...`)"
    )
    compile_parser.add_argument(
        "--gpu-node-selector", action="append", default=[], metavar="KEY=VALUE", help="a node label for the GPU steps"
    )
    compile_parser.add_argument(
        "--gpu-toleration",
        action="append",
        default=[],
        metavar="KEY[=VALUE][:EFFECT]",
        help="a taint the GPU steps tolerate, e.g. nvidia.com/gpu=present:NoSchedule",
    )
    compile_parser.set_defaults(func=cmd_compile)

    run_parser = commands.add_parser("run", help="run a pipeline locally under kfp.local")
    run_parser.add_argument("pipeline")
    run_parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    run_parser.add_argument("--root", default="runs", help="pipeline root: where runs write their outputs")
    run_parser.add_argument("--verbose", action="store_true", help="show kfp.local's and the tasks' output live")
    run_parser.add_argument(
        "--as-of", help="the end of a windowed pipeline's window, ISO 8601 in UTC (2026-01-07T00:00:00Z)"
    )
    run_parser.set_defaults(func=cmd_run)

    backfill_parser = commands.add_parser(
        "backfill", help="run the scheduled runs of a past period locally, one after another, each with its as_of"
    )
    backfill_parser.add_argument("pipeline")
    backfill_parser.add_argument("--from", dest="start", required=True, help="the period's start (ISO 8601, UTC)")
    backfill_parser.add_argument("--to", dest="end", required=True, help="the last scheduled time (ISO 8601, UTC)")
    backfill_parser.add_argument("--every", required=True, help="the schedule's period, and the default window: 7d")
    backfill_parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    backfill_parser.add_argument("--root", default="runs", help="pipeline root: where runs write their outputs")
    backfill_parser.add_argument("--verbose", action="store_true", help="show kfp.local's and the tasks' output live")
    backfill_parser.set_defaults(func=cmd_backfill)

    report_parser = commands.add_parser("report", help="rebuild every run's index.html and the history under --root")
    report_parser.add_argument("--root", default="runs", help="the pipeline root the runs wrote under")
    report_parser.set_defaults(func=cmd_report)

    serve_parser = commands.add_parser("serve", help="serve a kfp-ct model with the catalog's KServe model server")
    serve_parser.add_argument("model_uri", help="the model directory: a path, file:// or gs://")
    serve_parser.add_argument("--port", type=int, default=8080)
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--name", help="the model's name in the URLs (default: from the model)")
    serve_parser.add_argument(
        "--capture", help="capture every scored request as Parquet under this URI (path, gs://, s3://, minio://)"
    )
    serve_parser.set_defaults(func=cmd_serve)

    sink_parser = commands.add_parser(
        "capture-sink",
        add_help=False,  # its options are the sink's own (kfp-ct capture-sink --help)
        help="receive KServe's inference logger CloudEvents and write them as time-partitioned Parquet",
    )
    sink_parser.set_defaults(func=cmd_capture_sink)

    demo_parser = commands.add_parser("demo", help="the continuous-training loop, locally, on the embedded data")
    demo_parser.add_argument("--root", default="runs/demo")
    demo_parser.add_argument("--verbose", action="store_true", help="show kfp.local's and the tasks' output live")
    demo_parser.set_defaults(func=cmd_demo)

    manifests_parser = commands.add_parser("manifests", help="generate the KServe, Katib and cluster manifests")
    manifests_parser.add_argument("--kserve", default="kserve")
    manifests_parser.add_argument("--katib", default="katib")
    manifests_parser.add_argument("--cluster", default="cluster")
    manifests_parser.set_defaults(func=cmd_manifests)

    secret_parser = commands.add_parser(
        "secret",
        help="print the Secret kfp-ct-credentials of the steps, from this environment's values of its keys "
        "(pipe it to `kubectl apply -f -`)",
    )
    secret_parser.add_argument("--namespace", "-n", required=True, help="the profile namespace the runs are in")
    secret_parser.set_defaults(func=cmd_secret)

    for name, func, help_text in (
        ("submit", cmd_submit, "start a run on a KFP cluster"),
        ("schedule", cmd_schedule, "create a recurring run on a KFP cluster"),
    ):
        sub = commands.add_parser(name, help=help_text)
        if name == "submit":
            sub.add_argument("pipeline")
        else:
            sub.add_argument("--pipeline", default="continuous_training_pipeline")
            sub.add_argument("--cron", required=True, help="KFP's six fields, seconds first: '0 0 2 * * *'")
            sub.add_argument("--job-name", default="kfp-ct-continuous-training")
        sub.add_argument(
            "--host",
            help="the KFP API endpoint, with KFP_TOKEN or KF_PIPELINES_SA_TOKEN_PATH as its credential; without it, "
            "the cluster's own API server with the pod's service-account token (a Kubeflow notebook)",
        )
        sub.add_argument("--namespace", help="the user namespace (multi-user KFP; default: the client's)")
        sub.add_argument("--experiment", default="kfp-ct")
        sub.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
        if name == "submit":
            sub.add_argument("--run-name")
        sub.set_defaults(func=func)

    add_delivery_commands(commands)

    args, rest = parser.parse_known_args(argv)
    if args.command == "capture-sink":
        args.options = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
