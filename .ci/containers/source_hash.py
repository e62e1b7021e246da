"""Prints the sha256 of the catalog's source that the images install (what the Dockerfiles copy from the context:
components/, pipelines/, setup.cfg, pyproject.toml, constraints.txt, __init__.py; no tests, no caches).

`make image-*` labels each image with it (org.kfp-ct.source-sha256) and tests/containers compare it with the tree's,
so a test never runs an image built from other code without saying so.

usage: python source_hash.py [REPO]
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

LABEL = "org.kfp-ct.source-sha256"
FILES = ("setup.cfg", "pyproject.toml", "constraints.txt", "__init__.py")
TREES = ("components", "pipelines")


def source_hash(repo: Path) -> str:
    digest = hashlib.sha256()
    paths = [repo / name for name in FILES if (repo / name).is_file()]
    for tree in TREES:
        paths += [
            p
            for p in (repo / tree).rglob("*")
            if p.is_file()
            and not {"__pycache__", "tests", ".pytest_cache"} & set(p.relative_to(repo).parts)
            and p.suffix != ".pyc"
        ]
    for path in sorted(paths):
        digest.update(path.relative_to(repo).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


if __name__ == "__main__":
    print(source_hash(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2])))
