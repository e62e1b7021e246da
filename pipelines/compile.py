"""Compiles the catalog: each component into compiled/components/<name>.yaml, each pipeline into compiled/<name>.yaml."""

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
