"""Third-party middlewares enabled by name, like the built-ins: the entry-point group ``observed_batch.middleware``.

A package declares, in its ``pyproject.toml``::

    [project.entry-points."observed_batch.middleware"]
    acme_audit = "acme_audit.middleware:AuditMiddleware"

and ``OBSERVED_BATCH_MIDDLEWARE=metrics,acme_audit`` enables it, its options declared in ``OPTIONS``
(``observed_batch.options``; without one, its constructor's keyword-only parameters) and set exactly
as a built-in's (``OBSERVED_BATCH_ACME_AUDIT_<OPTION>``, pyproject ``[tool.observed_batch.acme_audit]``,
``Config.options``), validated by the same ``Option.check``. A plugin cannot take
a built-in's name. Installed distributions are only looked up when a name is not a built-in's, so a
configuration of built-ins pays nothing for this at cold start.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from observed_batch.errors import ConfigError

__all__ = ["ENTRY_POINT_GROUP", "installed", "plugin_class"]

ENTRY_POINT_GROUP = "observed_batch.middleware"


@lru_cache(maxsize=1)
def installed() -> dict[str, Any]:
    """Entry points of the installed plugins by name (looked up once per process)."""
    from importlib.metadata import entry_points

    return {entry.name: entry for entry in entry_points(group=ENTRY_POINT_GROUP)}


def plugin_class(name: str) -> type[Any] | None:
    """The middleware class of plugin ``name``, or ``None`` if no installed package declares it."""
    entry = installed().get(name)
    if entry is None:
        return None
    try:
        loaded = entry.load()
    except Exception as exc:
        raise ConfigError(f"middleware plugin {name!r} ({entry.value}) cannot be loaded: {exc}") from exc
    hooks = ("wrap_record", "on_batch_start", "on_batch_end")
    if not isinstance(loaded, type) or not any(callable(getattr(loaded, hook, None)) for hook in hooks):
        raise ConfigError(f"middleware plugin {name!r} ({entry.value}) is not a Middleware class")
    return loaded
