"""Compiles the catalog: components into compiled/components/<name>.yaml, pipelines into compiled/<name>.yaml."""

from __future__ import annotations

from pathlib import Path

from kfp import compiler


def compile_all(out_dir: str | Path = "compiled") -> list[Path]:
    """Writes every compiled YAML under `out_dir` and removes stale ones; returns the paths written."""
    from kfp_ct import components, pipelines

    out = Path(out_dir)
    (out / "components").mkdir(parents=True, exist_ok=True)
    targets = {out / "components" / f"{name}.yaml": getattr(components, name) for name in components.__all__}
    targets.update({out / f"{name}.yaml": pipeline for name, pipeline in pipelines.PIPELINES.items()})
    for stale in set(out.glob("*.yaml")) | set((out / "components").glob("*.yaml")):
        if stale not in targets:
            stale.unlink()
    for path, func in targets.items():
        compiler.Compiler().compile(func, str(path))
    return sorted(targets)


TABLE_START, TABLE_END = "<!-- components:start -->", "<!-- components:end -->"


def components_table() -> str:
    """The README's table of the catalog, from each component's docstring."""
    from kfp_ct import components

    rows = ["| component | what it does |", "|---|---|"]
    for name in components.__all__:
        summary = " ".join(getattr(components, name).component_spec.description.split("\n\n")[0].split())
        rows.append(f"| [`{name}`](components/{name}/) | {summary} |")
    return "\n".join(rows)


def write_readme_table(readme: str | Path = "README.md") -> None:
    """Replaces the table between the README's markers with the one the docstrings give."""
    path = Path(readme)
    text = path.read_text()
    head, _, rest = text.partition(TABLE_START)
    _, _, tail = rest.partition(TABLE_END)
    path.write_text(f"{head}{TABLE_START}\n{components_table()}\n{TABLE_END}{tail}")
