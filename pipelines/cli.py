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
    if settings and {"kfp_ct.components._image", *MODULES.values()} & set(sys.modules):
        raise SystemExit(f"{', '.join(settings)}: read when the catalog is built, which this process has done already")
    os.environ.update(settings)
    from kfp_ct.pipelines.compile import compile_all, write_readme_table

    for path in compile_all(args.out):
        print(path)
    if args.readme:
        write_readme_table(args.readme)
        print(f"{args.readme}: components table")


def cmd_run(args) -> None:
    from kfp_ct.pipelines.local_run import print_summary, run_local

    pipeline = _pipeline(args.pipeline)
    print_summary(run_local(pipeline, parse_params(args.param, pipeline), args.root))


def cmd_submit(args) -> None:
    from kfp_ct.pipelines import remote

    pipeline = _pipeline(args.pipeline)
    run_id = remote.submit(
        remote.client(args.host, args.namespace),
        pipeline,
        parse_params(args.param, pipeline),
        experiment=args.experiment,
        run_name=args.run_name,
    )
    print(f"run {run_id} of {pipeline.name} started on {args.host}")


def cmd_schedule(args) -> None:
    from kfp_ct.pipelines import remote

    pipeline = _pipeline(args.pipeline)
    recurring_id = remote.schedule(
        remote.client(args.host, args.namespace),
        pipeline,
        parse_params(args.param, pipeline),
        cron=args.cron,
        job_name=args.job_name,
        experiment=args.experiment,
    )
    print(f"recurring run {recurring_id} of {pipeline.name} on '{args.cron}' (one at a time, no catch-up)")


def cmd_serve(args) -> None:
    from kfp_ct.components.push.server import serve

    serve(args.model_uri, model_name=args.name, port=args.port, host=args.host)


def cmd_demo(args) -> None:
    from kfp_ct.pipelines.demo import run_demo

    run_demo(args.root)


def cmd_manifests(args) -> None:
    from kfp_ct.components.push.manifests import write_manifests as write_kserve
    from kfp_ct.components.tune.katib import write_manifests as write_katib

    for path in [*write_kserve(args.kserve), *write_katib(args.katib)]:
        print(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kfp-ct", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("components", help="list the catalog").set_defaults(func=cmd_components)

    compile_parser = commands.add_parser("compile", help="compile every component and pipeline into YAML")
    compile_parser.add_argument("--out", default="compiled")
    compile_parser.add_argument("--readme", help="also refresh the components table in this README")
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
    run_parser.set_defaults(func=cmd_run)

    serve_parser = commands.add_parser("serve", help="serve a kfp-ct model with the catalog's KServe model server")
    serve_parser.add_argument("model_uri", help="the model directory: a path, file:// or gs://")
    serve_parser.add_argument("--port", type=int, default=8080)
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--name", help="the model's name in the URLs (default: from the model)")
    serve_parser.set_defaults(func=cmd_serve)

    demo_parser = commands.add_parser("demo", help="the continuous-training loop, locally, on the embedded data")
    demo_parser.add_argument("--root", default="runs/demo")
    demo_parser.set_defaults(func=cmd_demo)

    manifests_parser = commands.add_parser("manifests", help="generate the KServe and Katib manifests")
    manifests_parser.add_argument("--kserve", default="kserve")
    manifests_parser.add_argument("--katib", default="katib")
    manifests_parser.set_defaults(func=cmd_manifests)

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
        sub.add_argument("--host", required=True, help="the KFP API endpoint")
        sub.add_argument("--namespace", help="the user namespace (multi-user KFP)")
        sub.add_argument("--experiment", default="kfp-ct")
        sub.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
        if name == "submit":
            sub.add_argument("--run-name")
        sub.set_defaults(func=func)

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
