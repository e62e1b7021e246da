from typing import Optional

from kfp import dsl

from kfp_ct.components._image import component


@component
def featurize(
    dataset: dsl.Input[dsl.Dataset],
    target_column: str,
    train: dsl.Output[dsl.Dataset],
    test: dsl.Output[dsl.Dataset],
    featurizer: dsl.Output[dsl.Model],
    test_fraction: float = 0.2,
    seed: int = 0,
    time_column: Optional[str] = None,
    task: Optional[str] = None,
    exclude_columns: Optional[list] = None,
    impute_non_finite: bool = False,
    labels_uri: str = "",
    label_id_column: str = "request_id",
):
    """Splits a dataset into train and test, and fits a featurizer on the train split only.

    The split is deterministic: by time when time_column is given (the latest test_fraction of rows is the test
    split), else stratified by class for classification, else shuffled with the seed. The featurizer imputes and
    scales numeric columns (refusing inf and -inf unless impute_non_finite), one-hot (or, above 20 categories,
    ordinal) encodes categorical ones, tolerating unseen categories, and turns dates into their parts.

    Args:
        dataset: The Parquet dataset to split (for example ingest's output).
        target_column: The column to predict.
        test_fraction: Share of rows in the test split, between 0 and 1.
        seed: Seed of the shuffled or stratified split.
        time_column: Column holding each row's time (numbers, dates or ISO 8601 text); when given, the split is by
            time. A value that does not parse as a time fails, naming the column and the value.
        task: classification or regression; inferred from the target column when not given, by the rule validate
            applies too: text, boolean and categorical columns are classes, and so are integer columns with at most
            20 distinct values that are at most 5% of the rows (or at most 3 values); other numbers are regression.
        exclude_columns: Columns that are not features (identifiers, or columns that leak the target).
        impute_non_finite: Impute inf and -inf in numeric features as missing values (median), in training and in
            serving alike; by default a feature holding them fails, naming the column (an infinite target always
            fails).
        labels_uri: For a dataset of captured traffic (kfp-ct serve --capture, kfp-ct capture-sink): the ground truth
            that arrived later (Parquet, CSV, ... on a path, http(s)://, gs://, s3://), with label_id_column and
            target_column. The rows that have a label are learnt from (their input columns and the target; time, when
            the request was served, stays in the splits but is not a feature);
            captured traffic without labels_uri fails, as labels_uri with other data does.
        label_id_column: The column that joins labels to captured rows (the capture's request_id).

    Returns:
        train: The train split, one Parquet file at {uri} with every column; metadata: rows, columns, sha256,
            source_uri, split.
        test: The test split, as train.
        featurizer: A directory: {uri}/transformer.skops (the fitted scikit-learn transformer, raw feature columns ->
            float32 matrix) and {uri}/featurizer.json (feature columns and types, target column, task, classes,
            time column); metadata: task, classes, target_column, features (and labels: the label join's counts,
            for captured traffic).
    """
    from kfp_ct.components.featurize.core import featurize as featurize_core

    result = featurize_core(
        dataset_path=dataset.path,
        target_column=target_column,
        train_path=train.path,
        test_path=test.path,
        featurizer_path=featurizer.path,
        test_fraction=test_fraction,
        seed=seed,
        time_column=time_column,
        task=task,
        exclude_columns=exclude_columns,
        impute_non_finite=impute_non_finite,
        source_uri=dataset.metadata.get("source_uri") or dataset.uri,
        labels_uri=labels_uri,
        label_id_column=label_id_column,
    )
    train.metadata.update(result.train)
    if dataset.metadata.get("window"):  # the time window ingest read: the trainers record it for reference_data
        train.metadata["window"] = dataset.metadata["window"]
    test.metadata.update(result.test)
    featurizer.metadata.update(result.metadata)
