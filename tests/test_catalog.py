"""The catalog as a user meets it: light imports, documented interfaces, packaging, and generated files in sync."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kfp_ct import components
from kfp_ct.pipelines.compile import TABLE_END, TABLE_START, compile_all, components_table

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "tensorflow", "evidently", "mlflow", "kserve", "optuna")


def test_importing_the_catalog_loads_no_heavy_library():
    code = (
        "import sys, kfp_ct.components, kfp_ct.pipelines; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_cores_never_import_kfp_and_the_catalog_names_stay_components():
    """Every module of a component's package but component.py imports without kfp (tune's workers and the model
    server load only those), and afterwards each catalog name still gives the component, not its package."""
    code = """
import importlib, pkgutil, sys, types
import kfp_ct.components as catalog
for package in ["_common", *catalog.__all__]:
    path = importlib.import_module(f"kfp_ct.components.{package}").__path__
    for module in pkgutil.iter_modules(path):
        if module.name != "component":
            importlib.import_module(f"kfp_ct.components.{package}.{module.name}")
            assert "kfp" not in sys.modules, f"kfp_ct.components.{package}.{module.name} imported kfp"
from kfp_ct.components import tune
assert not isinstance(tune, types.ModuleType) and tune.component_spec.name == "tune", tune
assert all(getattr(catalog, name).component_spec.name == name.replace("_", "-") for name in catalog.__all__)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("name", components.__all__)
def test_every_input_and_output_is_documented(name):
    spec = getattr(components, name).component_spec
    assert spec.description, f"{name} has no description"
    undocumented = [
        k for k, v in {**(spec.inputs or {}), **(spec.outputs or {})}.items() if not v.description and k != "Output"
    ]
    assert not undocumented, f"{name}: document {undocumented} (inputs under Args:, outputs under Returns:)"


def test_every_component_folder_is_packaged_exported_and_described():
    folders = sorted(p.parent.name for p in (REPO / "components").glob("*/component.py"))
    assert folders == sorted(components.__all__)
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    packaged = config["options"]["packages"].split()
    for name in folders:
        assert f"kfp_ct.components.{name}" in packaged
        metadata = yaml.safe_load((REPO / "components" / name / "metadata.yaml").read_text())
        assert metadata["name"] == name and metadata["stability"] in ("alpha", "beta", "stable")


def test_compiled_yaml_matches_the_code(tmp_path):
    written = compile_all(tmp_path)
    for path in written:
        committed = REPO / "compiled" / path.relative_to(tmp_path)
        assert committed.is_file(), f"{committed} is missing: run `make compile`"
        assert committed.read_text() == path.read_text(), f"{committed} is stale: run `make compile`"
    extra = {p.relative_to(REPO / "compiled") for p in (REPO / "compiled").rglob("*.yaml")} - {
        p.relative_to(tmp_path) for p in written
    }
    assert not extra, f"compiled files with no source: {extra}"


def test_compiled_components_use_the_catalog_image_and_install_nothing():
    from kfp_ct.components._common.images import GPU_IMAGE, IMAGE

    for path in (REPO / "compiled" / "components").glob("*.yaml"):
        spec = yaml.safe_load(path.read_text())
        for executor in spec["deploymentSpec"]["executors"].values():
            container = executor["container"]
            assert container["image"] in (IMAGE, GPU_IMAGE), path
            assert "pip install" not in " ".join(container["command"]), path


def test_readme_lists_every_component_as_its_docstring_says():
    readme = (REPO / "README.md").read_text()
    table = readme.split(TABLE_START)[1].split(TABLE_END)[0].strip()
    assert table == components_table(), "the README's components table is stale: run `make compile`"


def test_cli_lists_the_catalog():
    out = subprocess.run(
        [sys.executable, "-m", "kfp_ct.pipelines.cli", "components"], capture_output=True, text=True, check=True
    ).stdout
    assert [line.split()[0] for line in out.splitlines()] == components.__all__
