"""Every components/*/metadata.yaml in the shape kubeflow/pipelines-components' validator accepts
(scripts/validate_metadata/validate_metadata.py there), with KFP backend 2.5 (Kubeflow 1.10) as the declared minimum.

Its rules, restated: the fields name, stability, dependencies, lastVerified, in that order, then only tags, ci and
links; stability one of experimental, alpha, beta, stable; dependencies a mapping of `kubeflow` (which names
`Pipelines`) and optionally `external_services`, lists of {name, version}, each version a semantic version with an
optional >=, <= or == in front; lastVerified an RFC 3339 date-time within a year of today.
"""

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
METADATA = sorted((REPO / "components").glob("*/metadata.yaml"))
REQUIRED = ["name", "stability", "dependencies", "lastVerified"]
OPTIONAL = {"tags", "ci", "links"}
# semver.org's regular expression, as python-semver's Version.is_valid applies it
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


def metadata_errors(metadata: dict, today: datetime) -> list[str]:
    errors = []
    fields = [field for field in metadata if field not in OPTIONAL]
    if fields != REQUIRED:
        errors.append(f"fields {fields}, expected {REQUIRED} in this order (then only {sorted(OPTIONAL)})")
    if not isinstance(metadata.get("name"), str):
        errors.append("name is not a string")
    if metadata.get("stability") not in ("experimental", "alpha", "beta", "stable"):
        errors.append(f"stability {metadata.get('stability')!r}")
    verified = metadata.get("lastVerified")
    if not isinstance(verified, datetime):
        errors.append(f"lastVerified {verified!r} is not a date-time (YYYY-MM-DDT00:00:00Z)")
    elif abs((today - verified).days) >= 365:
        errors.append(f"lastVerified {verified} is a year or more away from today")
    dependencies = metadata.get("dependencies")
    if not isinstance(dependencies, dict) or set(dependencies) not in ({"kubeflow"}, {"kubeflow", "external_services"}):
        return [*errors, f"dependencies {dependencies!r}: a mapping of kubeflow and optionally external_services"]
    groups = [dependencies["kubeflow"], dependencies.get("external_services", [])]
    if not all(isinstance(group, list) for group in groups):
        return [*errors, "each kind of dependency is a list"]
    if not any(d.get("name") == "Pipelines" for d in dependencies["kubeflow"]):
        errors.append("no Kubeflow Pipelines dependency")
    for dependency in groups[0] + groups[1]:
        version = dependency.get("version")
        if "name" not in dependency or not isinstance(version, str):
            errors.append(f"dependency {dependency}: needs a name and a version")
        elif not SEMVER.match(version[2:] if version[:2] in (">=", "<=", "==") else version):
            errors.append(f"dependency {dependency}: the version is not semantic (MAJOR.MINOR.PATCH)")
    for field, kind in (("tags", list), ("ci", dict), ("links", dict)):
        if field in metadata and not isinstance(metadata[field], kind):
            errors.append(f"{field} is not a {kind.__name__}")
    if not all(isinstance(tag, str) for tag in metadata.get("tags", [])):
        errors.append("tags are not all strings")
    return errors


@pytest.mark.parametrize("path", METADATA, ids=lambda p: p.parent.name)
def test_metadata_passes_the_upstream_validator_and_declares_kfp_2_5(path):
    metadata = yaml.safe_load(path.read_text())
    assert metadata_errors(metadata, datetime.now(UTC)) == [], path
    assert metadata["name"] == path.parent.name
    [pipelines] = [d for d in metadata["dependencies"]["kubeflow"] if d["name"] == "Pipelines"]
    assert pipelines["version"] == ">=2.5.0"


def test_the_rules_refuse_what_the_upstream_validator_refuses():
    today = datetime(2026, 11, 30, tzinfo=UTC)
    good = yaml.safe_load(METADATA[0].read_text())
    assert metadata_errors(good, today) == []
    date_only = {**good, "lastVerified": good["lastVerified"].date()}
    stale = {**good, "lastVerified": datetime(2025, 11, 1, tzinfo=UTC)}
    two_parts = {**good, "dependencies": {"kubeflow": [{"name": "Pipelines", "version": ">=2.5"}]}}
    libraries = {**good, "dependencies": ["pyarrow"]}
    reordered = {"name": good["name"], "lastVerified": good["lastVerified"], **good}
    for bad in (date_only, stale, two_parts, libraries, reordered):
        assert metadata_errors(bad, today), bad
