from typing import Optional

from kfp import dsl

from kfp_ct.components._image import component


@component
def push(
    model: dsl.Input[dsl.Model],
    model_name: str,
    manifest: dsl.Output[dsl.Artifact],
    canary_report: dsl.Output[dsl.HTML],
    metrics: dsl.Output[dsl.Metrics],
    target: str = "local",
    storage_uri: str = "kfp-ct-models",
    namespace: str = "kubeflow-user-example-com",
    canary_traffic_percent: int = 10,
    deployment_mode: str = "Serverless",
    tracking_uri: Optional[str] = None,
    cpu_request: str = "500m",
    memory_request: str = "1Gi",
    cpu_limit: str = "2",
    memory_limit: str = "2Gi",
    gpu_count: int = 0,
    min_replicas: int = 1,
    max_replicas: int = 3,
    rollout_timeout_s: int = 600,
    test: Optional[dsl.Input[dsl.Dataset]] = None,
    canary_bake_s: int = 0,
    canary_rows_uri: str = "",
    canary_max_error_rate: float = 0.01,
    canary_max_latency_ratio: float = 1.5,
    canary_max_prediction_shift: float = 0.1,
    capture_url: str = "",
) -> str:
    """Publishes a model version, proves it serves, and deploys it to KServe (or makes it the local champion).

    Every check runs first: the name, the manifest, and the MLflow registry (it must exist, answer and know the
    model's training run; push never creates one). The model is then copied to storage_uri under a new version
    folder, atomically (readers only see complete versions). Infra validation starts the catalog's model server on
    that copy and sends the model's input example through the V1 and V2 protocols; any failure from there on
    (validation, registry, rollout) withdraws the copy, and nothing is promoted. With
    target="kserve" the InferenceService (validated against the CRD schema) is created or updated with a canary,
    smoke-tested once Ready, then promoted to 100% or rolled back to 0% (in RawDeployment/Standard mode: a full
    rollout gated on the smoke test, rolled back to the previous storageUri). With target="local" the registered
    version becomes the `champion` alias in MLflow (the previous champion stays registered).

    With canary_bake_s > 0 the candidate is also judged on traffic before it is promoted: a sample of real rows (the
    test dataset, or canary_rows_uri) is replayed for canary_bake_s seconds (and each row at least once) to the canary
    and to the stable model (on KServe Serverless the canary and previous revisions, through their tag URLs; in
    RawDeployment/Standard mode the stable InferenceService and a second one, MODEL_NAME-canary, created for the
    candidate (same spec, labelled kfp-ct.io/canary-of=MODEL_NAME; one left by a crashed push is replaced) and reached
    at their status.address.url; locally the champion and the candidate, each on the catalog's server on loopback), and
    every comparison must stay within its bound: the canary's error rate, its p99 latency over the stable's, and how far
    its predictions diverge from the stable's (share of changed labels for classification, relative error for
    regression). Otherwise the canary is rolled back to 0% (in raw mode the canary InferenceService is deleted and the
    stable one never touched; locally the champion alias does not move), the published copy is withdrawn, the registry
    alias does not move, and the step fails, naming each bound broken and the figures. In raw mode a canary that passes
    is deleted after the stable InferenceService is rolled out to the candidate (full rollout, smoke test, rollback on
    failure).

    Args:
        model: The model to push (a kfp-ct MLflow model directory, as the trainers write it).
        model_name: The InferenceService name and the model's name on the endpoints (/v1/models/NAME:predict):
            lowercase letters, digits and '-'.
        target: local (MLflow champion alias and the manifest that would be applied) or kserve (roll out).
        storage_uri: Where model versions are published: a path, file://, gs://bucket/prefix or s3://bucket/prefix
            (kserve needs gs:// or s3://; s3:// uses AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
            AWS_REGION, and its InferenceService runs as the ServiceAccount kfp-ct-s3, see
            kserve/s3-storage-access-example.yaml). A relative path is taken from the working folder.
        namespace: The Kubernetes namespace of the InferenceService.
        canary_traffic_percent: Share of traffic the new version gets while it is smoke-tested (Serverless mode).
        deployment_mode: Serverless (Knative; canary rollout) or RawDeployment/Standard (full rollout, rolled back on
            failure).
        tracking_uri: MLflow tracking and registry URI; default MLFLOW_TRACKING_URI, else the one the model was
            trained with.
        cpu_request: CPU request of each predictor replica.
        memory_request: Memory request of each predictor replica.
        cpu_limit: CPU limit of each predictor replica.
        memory_limit: Memory limit of each predictor replica.
        gpu_count: GPUs (nvidia.com/gpu) per predictor replica; 0 for none.
        min_replicas: Minimum predictor replicas (0 lets Serverless scale to zero).
        max_replicas: Maximum predictor replicas.
        rollout_timeout_s: How long each rollout step may wait for the InferenceService to be Ready.
        test: The model's test split (featurize's test output). When given, the server's numpy fast path is
            compared with the model on every row of it, and a proof of equality is published with the model (the
            server uses the fast path only for a model carrying that proof, else it runs the model itself); its rows
            are also what the canary analysis replays, unless canary_rows_uri is set.
        canary_bake_s: How long the canary analysis replays rows to both models (each row at least once); 0 for no
            analysis (a smoke test only). With target=kserve and deployment_mode=Serverless it needs
            canary_traffic_percent within 1..99; in RawDeployment/Standard mode MODEL_NAME-canary must be a valid
            InferenceService name.
        canary_rows_uri: A Parquet dataset (a file or a folder, hive-partitioned or not, e.g. captured traffic under
            model=NAME/dt=DAY/hour=H/; a path, gs://, s3:// or minio://) holding the model's input columns, to
            replay instead of the test dataset.
        canary_max_error_rate: The largest share of failed canary requests that still passes (0..1).
        canary_max_latency_ratio: The largest canary p99 latency over the stable's p99 that still passes.
        canary_max_prediction_shift: The largest divergence of the canary's predictions from the stable's that still
            passes: share of changed labels (classification) or sum|canary - stable| / sum|stable| (regression).
        capture_url: The capture sink's URL (kserve/capture-sink.yaml, e.g.
            http://kfp-ct-capture-sink.NAMESPACE.svc.cluster.local): the InferenceService then carries KServe's logger
            (spec.predictor.logger, mode all), which sends every request and answer there, to be captured as
            Parquet; "" for no capture.

    Returns:
        manifest: The InferenceService YAML at {uri} (what was applied, or would be with target=local); metadata:
            url, storage_uri, target, registered_model, version, previous_champion, canary_analysis (the figures,
            the bounds and the verdict, or why no analysis ran).
        canary_report: The canary analysis as a page: each comparison, its bound and its verdict.
        metrics: The canary analysis figures (error rates, p99 latencies and their ratio, prediction shift).
        Output: The V1 predict URL of the InferenceService (http://.../v1/models/NAME:predict).
    """
    from kfp_ct.components.push.core import push as push_core
    from kfp_ct.components.push.core import write_manifest
    from kfp_ct.components.push.manifests import Resources

    result = push_core(
        model_dir=model.path,
        model_name=model_name,
        target=target,
        storage_uri=storage_uri,
        namespace=namespace,
        canary_traffic_percent=canary_traffic_percent,
        deployment_mode=deployment_mode,
        tracking_uri=tracking_uri,
        resources=Resources(cpu_request, memory_request, cpu_limit, memory_limit, gpu_count),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        rollout_timeout_s=rollout_timeout_s,
        test_path=test.path if test is not None else None,
        canary_bake_s=canary_bake_s,
        canary_rows_uri=canary_rows_uri,
        canary_max_error_rate=canary_max_error_rate,
        canary_max_latency_ratio=canary_max_latency_ratio,
        canary_max_prediction_shift=canary_max_prediction_shift,
        registered_version=model.metadata.get("version"),
        capture_url=capture_url,
    )
    write_manifest(result.manifest, manifest.path)
    manifest.metadata.update(result.metadata)
    result.log_metrics(metrics)
    with open(canary_report.path, "w") as f:
        f.write(result.canary_html())
    return result.url
