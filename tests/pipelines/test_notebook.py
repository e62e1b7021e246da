"""The example notebook runs in CI up to the first cell that needs a KFP host."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "continuous_training.ipynb"


def test_notebook_runs_until_a_host_is_needed(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}})
    ran = 0
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            if "needs-host" in cell.metadata.get("tags", []):
                break
            client.execute_cell(cell, index)
            ran += cell.cell_type == "code"
    assert ran >= 3
    assert (tmp_path / "continuous-training-pipeline.yaml").is_file()
