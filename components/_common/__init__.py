"""What the components share. Importing it switches MLflow's pickle deserialization off in this process: the catalog
loads models only through `model.load_model`, which reads skops, torch weights and .keras files in their safe modes,
and never through an MLflow flavor's loader, which would follow a model folder's own MLmodel to a pickle."""

import os

os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
