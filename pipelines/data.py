"""data_pipeline: ingest -> validate -> featurize."""

from typing import Optional

from kfp import dsl

from kfp_ct.components import featurize, ingest, validate
from kfp_ct.pipelines.steps import step


@dsl.pipeline(
    name="data-pipeline", description="Ingest a dataset, validate it (inferring its schema) and featurize it."
)
def data_pipeline(
    source_uri: str,
    target_column: str,
    file_format: str = "auto",
    time_column: Optional[str] = None,
    start: Optional[str] = None,
    end: Optional[str] = None,
    exclude_columns: Optional[list] = None,
    test_fraction: float = 0.2,
    seed: int = 0,
):
    """Ingests `source_uri`, infers and checks its schema, splits it and fits a featurizer on the train split."""
    data = step(ingest(source_uri=source_uri, file_format=file_format, time_column=time_column, start=start, end=end))
    checked = step(validate(dataset=data.outputs["dataset"], target_column=target_column))
    features = featurize(
        dataset=data.outputs["dataset"],
        target_column=target_column,
        exclude_columns=exclude_columns,
        test_fraction=test_fraction,
        seed=seed,
        time_column=time_column,
    )
    step(features.after(checked))
