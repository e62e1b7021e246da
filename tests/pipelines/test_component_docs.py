"""components/<name>/README.md is generated from each component's docstring and signature (`kfp-ct compile --readme
README.md`): it is not stale, and both of its examples of use compile into a pipeline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from kfp import compiler

from kfp_ct import components
from kfp_ct.pipelines.compile import component_readme

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", components.__all__)
def test_component_readme_is_not_stale(name):
    path = REPO / "components" / name / "README.md"
    assert path.is_file(), f"{path} is missing: run `make compile`"
    assert path.read_text() == component_readme(name), f"{path} is stale: run `make compile`"


@pytest.mark.parametrize("name", components.__all__)
def test_component_readme_examples_compile(name, tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "components" / name / "README.md").read_text(), re.S)
    assert len(blocks) == 2, "an example from the compiled YAML and one from Python"
    for i, block in enumerate(blocks):
        namespace: dict = {}
        exec(compile(block, f"{name}/README.md example {i + 1}", "exec", dont_inherit=True), namespace)  # noqa: S102 (our own README)
        compiler.Compiler().compile(namespace["my_pipeline"], str(tmp_path / f"example-{i}.yaml"))
        assert name.replace("_", "-") in (tmp_path / f"example-{i}.yaml").read_text()


def test_the_catalog_table_links_each_components_readme():
    readme = (REPO / "README.md").read_text()
    for name in components.__all__:
        assert f"(components/{name}/README.md)" in readme
