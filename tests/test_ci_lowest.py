"""``.ci/lowest.py``: the pins CI's floor pass installs are the lowest versions pyproject.toml declares."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_lowest", REPO / ".ci" / "lowest.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lowest = _load()
PYPROJECT: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())


def _declared_floors() -> dict[str, str]:
    """Read independently of the script: ``name>=floor`` of the core and of every extra ``all`` names."""
    project = PYPROJECT["project"]
    (all_extras,) = [re.search(r"\[(.*)\]", line).group(1) for line in project["optional-dependencies"]["all"]]
    lines = list(project["dependencies"])
    for extra in all_extras.split(","):
        lines += project["optional-dependencies"][extra.strip()]
    floors: dict[str, str] = {}
    for line in lines:
        if "python_version < '3.11'" in line and sys.version_info >= (3, 11):
            continue
        name, floor = re.match(r"([A-Za-z0-9_.-]+)\s*>=\s*([^,;\s]+)", line).groups()
        floors[name] = floor
    return floors


def test_the_pins_are_the_floors_of_the_core_and_of_every_backend() -> None:
    # GIVEN the project's pyproject.toml
    # WHEN the script prints its pins
    printed = subprocess.run(
        [sys.executable, str(REPO / ".ci" / "lowest.py")], capture_output=True, text=True, check=True
    ).stdout
    # THEN there is one `name==floor` line per requirement of the core and the `all` extra, nothing else
    # (the test tools stay at their newest), each exactly as declared
    pins = dict(line.split("==") for line in printed.splitlines())
    assert pins == _declared_floors()
    assert {"aws-lambda-powertools", "sentry-sdk", "structlog", "opentelemetry-sdk", "aws-xray-sdk"} <= set(pins)
    assert not {"pytest", "pydantic", "moto"} & set(pins)
    assert lowest.CONSISTENT == {}  # the declared floors resolve together; a lifted one must be visible here


def _project(dependencies: list[str], **extras: list[str]) -> dict[str, Any]:
    return {"project": {"name": "observed-batch", "dependencies": dependencies, "optional-dependencies": extras}}


def test_nested_extras_are_expanded_and_the_highest_floor_of_a_name_wins() -> None:
    # GIVEN two extras of `all` asking for the same package with different floors, and a marker that holds nowhere
    project = _project(
        ["click>=8.1", "tomli>=2.0; python_version < '3.0'"],
        doctor=["boto3>=1.35.67"],
        policies=["boto3>=1.34"],
        both=["observed-batch[doctor,policies]"],
        all=["observed-batch[both]"],
        dev=["pytest>=8"],
    )
    # WHEN pinned
    # THEN every extra reached from `all` counts, once per package, at its highest floor; dev does not
    assert lowest.pins(project) == ["click==8.1", "boto3==1.35.67"]


def test_a_requirement_without_a_floor_is_refused_by_name() -> None:
    # GIVEN a backend declared without a lower bound
    project = _project(["click"], all=[])
    # WHEN pinned THEN the script stops, naming it: an undeclared floor cannot be tested
    with pytest.raises(SystemExit, match="click must declare exactly one lower bound"):
        lowest.pins(project)


def test_a_lifted_floor_replaces_the_declared_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a floor that does not resolve with the others, lifted in CONSISTENT
    monkeypatch.setattr(lowest, "CONSISTENT", {"sentry-sdk": ("2.1", "an example")})
    # WHEN pinned THEN the lifted version is printed
    assert lowest.pins(_project([], sentry=["sentry-sdk>=2.0"], all=["observed-batch[sentry]"])) == ["sentry-sdk==2.1"]
