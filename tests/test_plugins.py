"""Third-party middlewares enabled by name through the ``observed_batch.middleware`` entry-point group.

The plugin here is a real distribution on ``sys.path`` (a module and its ``.dist-info`` with
``entry_points.txt``), found by ``importlib.metadata`` exactly as an installed package would be.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import observed_batch as ob
from observed_batch import plugins
from observed_batch.testing import sqs_event

PLUGIN = """
from observed_batch import Middleware
from observed_batch.options import Option, Options, validated

SEEN = []


@validated
class AuditMiddleware(Middleware):
    name = "acme_audit"
    OPTIONS = Options(
        Option("level", int, 1, "Audit detail.", min=1, max=3),
        Option("tag", str, "audit", "Tag of the audit lines."),
    )

    def __init__(self, *, level: int = 1, tag: str = "audit") -> None:
        self.level = level
        self.tag = tag

    def on_batch_end(self, batch, summary):
        SEEN.append((self.tag, self.level, summary.total))
"""


@pytest.fixture
def acme_audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The ``acme-audit`` distribution, declaring ``acme_audit = acme_audit_mw:AuditMiddleware``."""
    (tmp_path / "acme_audit_mw.py").write_text(textwrap.dedent(PLUGIN))
    info = tmp_path / "acme_audit-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-audit\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[observed_batch.middleware]\nacme_audit = acme_audit_mw:AuditMiddleware\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.installed.cache_clear()
    yield __import__("acme_audit_mw")
    plugins.installed.cache_clear()
    sys.modules.pop("acme_audit_mw", None)


def test_a_plugin_is_enabled_by_name_from_the_environment_with_its_options(
    acme_audit: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the installed plugin named next to a built-in, with options in the environment
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", "metrics,acme_audit")
    monkeypatch.setenv("OBSERVED_BATCH_ACME_AUDIT_LEVEL", "3")
    monkeypatch.setenv("OBSERVED_BATCH_ACME_AUDIT_TAG", "orders")

    # WHEN a processor is built and runs a batch
    processor = ob.BatchProcessor(ob.EventType.SQS)
    ob.process_partial_response(sqs_event(2), lambda record: "ok", processor)

    # THEN the plugin is in the chain, configured from the environment
    assert [m.name for m in processor.middlewares] == ["metrics", "acme_audit"]
    assert acme_audit.SEEN == [("orders", 3, 2)]  # type: ignore[attr-defined]


def test_a_plugins_options_are_validated_like_a_builtins(acme_audit: object, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the plugin enabled with a value of the wrong type, then with an option it does not have
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", "acme_audit")
    monkeypatch.setenv("OBSERVED_BATCH_ACME_AUDIT_LEVEL", "high")

    # WHEN the processor is built THEN a ConfigError names the variable
    with pytest.raises(ob.ConfigError, match="OBSERVED_BATCH_ACME_AUDIT_LEVEL"):
        ob.BatchProcessor(ob.EventType.SQS)
    monkeypatch.delenv("OBSERVED_BATCH_ACME_AUDIT_LEVEL")
    monkeypatch.setenv("OBSERVED_BATCH_ACME_AUDIT_LEVL", "2")
    with pytest.raises(ob.ConfigError, match="did you mean OBSERVED_BATCH_ACME_AUDIT_LEVEL"):
        ob.BatchProcessor(ob.EventType.SQS)


def test_options_in_code_and_pyproject_reach_a_plugin(acme_audit: object, tmp_path: Path) -> None:
    # GIVEN options for the plugin in Config.options
    config = ob.Config(middleware=["acme_audit"], options={"acme_audit": {"tag": "from-code"}})

    # WHEN the processor is built THEN the plugin got them
    (middleware,) = ob.BatchProcessor(ob.EventType.SQS, config=config).middlewares
    assert (middleware.tag, middleware.level) == ("from-code", 1)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("env", "OBSERVED_BATCH_ACME_AUDIT_LEVEL=5 must be at most 3"),
        ("pyproject", "[tool.observed_batch.acme_audit] level=0 must be at least 1"),
        ("config", "acme_audit option level=True must be of type int"),
        ("constructor", "acme_audit option level=4 must be at most 3"),
    ],
)
def test_a_plugins_declared_options_get_the_builtins_validation_from_every_source(
    acme_audit: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, message: str
) -> None:
    # GIVEN the plugin, which declares level as an int from 1 to 3, and a bad level from one source
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", "acme_audit")
    config = None
    if source == "env":
        monkeypatch.setenv("OBSERVED_BATCH_ACME_AUDIT_LEVEL", "5")
    elif source == "pyproject":
        path = tmp_path / "pyproject.toml"
        path.write_text("[tool.observed_batch.acme_audit]\nlevel = 0\n")
        monkeypatch.setenv("OBSERVED_BATCH_PYPROJECT", str(path))
    elif source == "config":
        config = ob.Config(options={"acme_audit": {"level": True}})

    # WHEN the processor (or the middleware itself) is built
    # THEN a ConfigError names where the value came from and the bound it breaks
    def build() -> object:
        if source == "constructor":
            return acme_audit.AuditMiddleware(level=4)  # type: ignore[attr-defined]
        return ob.BatchProcessor(ob.EventType.SQS, config=config)

    with pytest.raises(ob.ConfigError) as raised:
        build()
    assert str(raised.value) == message


def test_installed_plugins_are_listed_among_the_valid_names(
    acme_audit: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the plugin installed and a misspelt name
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", "acme_audi")

    # WHEN the processor is built THEN the error lists the plugin with the built-ins
    with pytest.raises(ob.ConfigError, match=r"unknown middleware 'acme_audi'.*, acme_audit$"):
        ob.BatchProcessor(ob.EventType.SQS)


def test_without_the_plugin_installed_its_name_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    plugins.installed.cache_clear()
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", "acme_audit")
    with pytest.raises(ob.ConfigError, match="unknown middleware 'acme_audit'"):
        ob.BatchProcessor(ob.EventType.SQS)
