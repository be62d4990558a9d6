"""A built-in-shaped middleware for configuration tests (options of every supported kind)."""

from __future__ import annotations

from typing import Any, Literal

from observed_batch import ConfigError, Middleware


class DummyMiddleware(Middleware):
    name = "dummy"

    def __init__(
        self,
        *,
        max_bytes: int = 1024,
        ratio: float = 0.1,
        enabled: bool = False,
        label: str = "x",
        limit: int | None = None,
        mode: Literal["per_record", "batch"] = "per_record",
        backend: Any = None,
    ) -> None:
        if max_bytes > 10_000:
            raise ConfigError(f"max_bytes={max_bytes} exceeds 10000")
        self.options = {
            "max_bytes": max_bytes,
            "ratio": ratio,
            "enabled": enabled,
            "label": label,
            "limit": limit,
            "mode": mode,
            "backend": backend,
        }


class TypeErrorMiddleware(Middleware):
    name = "type_error"

    def __init__(self, *, size: int = 1) -> None:
        raise TypeError("size is broken")


class NoInit(DummyMiddleware):
    """Options inherited: not readable from this module's source."""

    name = "inherits"
