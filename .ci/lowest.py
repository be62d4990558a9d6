"""Print the lowest versions pyproject.toml declares, as pip pins: CI's second test pass installs them.

Every requirement of ``[project] dependencies`` and of the ``all`` extra (``observed-batch[...]``
self-references expanded), whose environment marker holds for this interpreter, becomes one line
``name==floor``, the floor being its ``>=`` (or ``==`` / ``~=``) bound. A requirement without a lower
bound is an error: an undeclared floor cannot be tested. The test tools (``dev``) stay at their
newest, as does pydantic (``examples``: the examples' model parsing, not a backend).

    python .ci/lowest.py                 # one pin per line, for: pip install -r <(python .ci/lowest.py)

The floors as declared form a set pip resolves on its own (CI installs them together with the project
and its test tools, then runs ``pip check``): opentelemetry-sdk 1.26.0 pins opentelemetry-api 1.26.0 and
opentelemetry-semantic-conventions 0.47b0 exactly, which pins opentelemetry-api 1.26.0 too, and the OTLP
exporter 1.26.0 pins its proto packages at 1.26.0: the declared floors are that very set. boto3 1.35.67
accepts the newest 1.35 botocore, which the newest moto and cfn-lint accept. What pyproject does not name
(botocore, protobuf, urllib3, ...) resolves to the newest version the pins allow. Should a future floor
not resolve with the others, ``CONSISTENT`` lifts it to the lowest version that does, with the reason:
the pins printed are then the lowest *consistent* set, and ``tests/test_ci_lowest.py`` keeps the
exception visible.
"""

from __future__ import annotations

import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Floors pip cannot install together with the others, lifted: name -> (version, why). Empty while the
#: declared floors resolve as a set.
CONSISTENT: dict[str, tuple[str, str]] = {}

_LOWER = ("==", ">=", "~=")


def requirements(pyproject: dict[str, object]) -> list[Requirement]:
    """The core requirements and those of the ``all`` extra, self-references expanded (order kept)."""
    project = pyproject["project"]
    assert isinstance(project, dict)
    name = canonicalize_name(project["name"])
    extras: dict[str, list[str]] = project.get("optional-dependencies", {})
    found: list[Requirement] = []

    def add(lines: list[str], seen: set[str]) -> None:
        for line in lines:
            requirement = Requirement(line)
            if canonicalize_name(requirement.name) == name:
                for extra in sorted(requirement.extras - seen):
                    add(extras[extra], seen | {extra})
            else:
                found.append(requirement)

    add(list(project.get("dependencies", [])), set())
    add(extras["all"], {"all"})
    return found


def floor(requirement: Requirement) -> str:
    """The lowest version ``requirement`` admits, as written in pyproject."""
    bounds = [spec.version for spec in requirement.specifier if spec.operator in _LOWER]
    if len(bounds) != 1:
        raise SystemExit(f"pyproject.toml: {requirement} must declare exactly one lower bound (>=, ~= or ==)")
    return bounds[0]


def pins(pyproject: dict[str, object]) -> list[str]:
    """``name==floor`` for every requirement that applies here, each name once (the highest floor wins)."""
    chosen: dict[str, tuple[str, str]] = {}
    for requirement in requirements(pyproject):
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        key = canonicalize_name(requirement.name)
        version = CONSISTENT[key][0] if key in CONSISTENT else floor(requirement)
        if key not in chosen or Version(version) > Version(chosen[key][1]):
            chosen[key] = (requirement.name, version)
    return [f"{name}=={version}" for name, version in chosen.values()]


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "pyproject.toml"
    with path.open("rb") as file:
        print("\n".join(pins(tomllib.load(file))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
