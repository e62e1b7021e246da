from kfp import dsl

from kfp_ct.components._image import component


@component
def validate(
    dataset: dsl.Input[dsl.Dataset],
    target_column: str,
    schema: dsl.Output[dsl.Artifact],
    report: dsl.Output[dsl.HTML],
    metrics: dsl.Output[dsl.Metrics],
    reference_schema: dsl.Input[dsl.Artifact] = None,
    null_tolerance: float = 0.05,
    out_of_range_tolerance: float = 0.05,
    unseen_category_tolerance: float = 0.05,
    target_null_tolerance: float = 0.0,
    max_categories: int = 100,
    max_classes: int = 100,
    block_new_nulls: bool = False,
    strict: bool = False,
):
    """Infers a dataset's schema and checks it against a reference schema, failing on blocking anomalies.

    One streaming pass over the Parquet dataset, in bounded batches. Without a reference it blocks on an empty
    dataset, an all-null column, inf or -inf in a numeric column and a missing, null or one-class target, and warns
    on a classification target with more than max_classes classes. With one it also blocks on missing or extra
    columns, type changes and a null share above the reference's plus null_tolerance, and warns (in the report) on
    nulls in a column that had none, values out of the reference's range, unseen categories, new target classes and
    constant columns that vary. All blocking anomalies are listed in one error, raised after the report and metrics
    are written (under kfp.local they stay in the run's folder; a KFP cluster uploads no output of a failed task).

    Args:
        dataset: The Parquet dataset to validate.
        target_column: The label column.
        reference_schema: A schema written by this component (for example the one of the champion's training
            data); without it the schema is only inferred.
        null_tolerance: How much a column's null share may exceed the reference's (0 to 1).
        out_of_range_tolerance: Share of a column's values outside the reference's [min, max] that is tolerated
            before a warning.
        unseen_category_tolerance: Share of a column's values outside the reference's categories that is
            tolerated before a warning.
        target_null_tolerance: Share of rows whose target may be null.
        max_categories: Most distinct values tracked as categories of a string, bool or int column.
        max_classes: Most classes a classification target may have before a warning (the trainers' own
            max_classes refuses more before fitting).
        block_new_nulls: Make nulls in a column that had none in the reference blocking (else a warning).
        strict: Make every warning blocking.

    Returns:
        schema: The dataset's inferred schema (JSON, format kfp-ct.schema/v1, sorted keys) at {uri}; it can be the
            next reference.
        report: An HTML page: the verdict, a table of the anomalies and the schema.
        metrics: rows, columns, anomalies, blocking and warnings.
    """
    from kfp_ct.components.validate.core import validate as validate_core
    from kfp_ct.components.validate.core import write_report, write_schema

    result = validate_core(
        dataset_path=dataset.path,
        target_column=target_column,
        reference_schema_path=reference_schema.path if reference_schema is not None else None,
        null_tolerance=null_tolerance,
        out_of_range_tolerance=out_of_range_tolerance,
        unseen_category_tolerance=unseen_category_tolerance,
        target_null_tolerance=target_null_tolerance,
        max_categories=max_categories,
        max_classes=max_classes,
        block_new_nulls=block_new_nulls,
        strict=strict,
    )
    for anomaly in result.anomalies:
        print(f"{'BLOCKING' if anomaly.blocking else 'warning'}: {anomaly}")
    write_report(result, report.path)
    result.log_metrics(metrics)
    result.raise_for_blocking()
    write_schema(result.schema, schema.path)
    schema.metadata.update(result.metadata)
