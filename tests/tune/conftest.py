"""A small real train split and featurizer for the tuning tests: the first rows of elec2, featurized by the
catalog's featurize core."""

import pandas as pd
import pytest


@pytest.fixture(scope="session")
def elec2_split(shared_data, tmp_path_factory):
    from kfp_ct.components._common import datasets
    from kfp_ct.components.featurize.core import featurize

    root = tmp_path_factory.mktemp("tune-elec2")
    frame = pd.read_csv(shared_data / "elec2" / "elec2.csv", nrows=4000)
    datasets.write_frame(frame, root / "dataset.parquet", "elec2.csv[:4000]")
    featurize(
        dataset_path=str(root / "dataset.parquet"),
        target_column="class",
        train_path=str(root / "train.parquet"),
        test_path=str(root / "test.parquet"),
        featurizer_path=str(root / "featurizer"),
        task="classification",
        seed=0,
    )
    return {"train": str(root / "train.parquet"), "featurizer": str(root / "featurizer"), "root": root}
