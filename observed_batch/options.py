"""Middleware options, declared once: name, type (or allowed values), default, bounds, doc.

A middleware lists its options in ``OPTIONS`` and every value goes through :meth:`Option.check`,
wherever it comes from: ``OBSERVED_BATCH_<MIDDLEWARE>_<OPTION>`` (parsed from text first), a
``[tool.observed_batch.<middleware>]`` table, ``Config(options=...)`` or the constructor itself
(``@validated`` runs the check on its keyword arguments)::

    @validated
    class AuditMiddleware(Middleware):
        name = "acme_audit"
        OPTIONS = Options(
            Option("level", int, 1, "Audit detail, 1 to 3.", min=1, max=3),
            Option("tag", str, "audit", "Tag of every audit line."),
        )

        def __init__(self, *, level: int = 1, tag: str = "audit") -> None: ...

The constructor keeps its keyword arguments (what users and type checkers see); a test keeps them
equal to the declaration. This module imports no backend, so ``config`` can check the options of a
middleware that is not enabled by importing only the middleware's own module.
"""

from __future__ import annotations

import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from functools import wraps
from typing import Any, NamedTuple, TypeVar

from observed_batch.errors import ConfigError

__all__ = ["Option", "Options", "declared", "parse_bool", "validated"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_SCALARS = (int, float, bool, str)
_T = TypeVar("_T", bound=type)


def parse_bool(value: str, variable: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{variable}={value!r} is not a boolean; use true or false")


class Option(NamedTuple):
    """One option. ``kind`` is ``int``, ``float``, ``bool``, ``str``, a tuple of the allowed strings, or
    ``None`` for an object only code can pass (a tracer provider, a sink): such options have no
    environment variable. Numbers are non-negative unless ``min`` says otherwise; ``max`` is an
    inclusive bound, ``below`` an exclusive one. ``accepts`` admits code values beyond ``kind`` (a
    list of exception classes where the environment gives their names), described by ``expects``.
    ``default_doc`` says what an unset option means when the default is resolved at construction.

    Immutable like a frozen dataclass; a ``NamedTuple`` because its class costs a fifth as much to
    create at cold start (about 0.1 ms instead of 0.6 ms).
    """

    name: str
    kind: type | tuple[str, ...] | None
    default: Any = None
    doc: str = ""
    min: float | None = 0
    max: float | None = None
    below: float | None = None
    accepts: Callable[[Any], bool] | None = None
    expects: str = ""
    default_doc: str = ""

    @property
    def settable(self) -> bool:
        """Settable from the environment and pyproject (else code only)."""
        return self.kind is not None

    def variable(self, middleware: str) -> str:
        """The environment variable: ``OBSERVED_BATCH_<MIDDLEWARE>_<OPTION>``."""
        return f"OBSERVED_BATCH_{middleware.upper()}_{self.name.upper()}"

    def parse(self, raw: str, variable: str) -> Any:
        """The value of environment variable ``variable`` holding ``raw``, checked."""
        kind = self.kind
        if kind is bool:
            return parse_bool(raw, variable)
        if kind is int or kind is float:
            try:
                number = kind(raw.strip())
            except ValueError:
                raise ConfigError(f"{variable}={raw!r} is not {'an integer' if kind is int else 'a number'}") from None
            return self.check(number, variable)
        return self.check(raw.strip(), variable)

    def check(self, value: Any, where: str) -> Any:
        """``value`` (an ``int`` widened to ``float`` for a float option) if valid, else ``ConfigError``
        naming ``where`` (the variable, the pyproject key, or ``<middleware> option <name>``)."""
        kind = self.kind
        if value is None and self.default is None:
            return None
        if self.accepts is not None and not isinstance(value, str) and self.accepts(value):
            return value
        if kind is None:
            if self.accepts is None:
                return value
            raise ConfigError(f"{where}={value!r} must be {self.expects}")
        if isinstance(kind, tuple):
            if value not in kind:
                raise ConfigError(f"{where}={value!r} is not one of: {', '.join(kind)}")
            return value
        given = value
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            what = self.expects or f"of type {kind.__name__}"
            raise ConfigError(f"{where}={given!r} must be {what}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self._check_bounds(value, given, where)
        return value

    def _check_bounds(self, value: float, given: object, where: str) -> None:
        if self.min is not None and value < self.min:
            rule = "must not be negative" if self.min == 0 else f"must be at least {self.min}"
            raise ConfigError(f"{where}={given!r} {rule}")
        if self.max is not None and value > self.max:
            raise ConfigError(f"{where}={given!r} must be at most {self.max}")
        if self.below is not None and value >= self.below:
            raise ConfigError(f"{where}={given!r} must be below {self.below}")

    def describe(self) -> str:
        """What a valid value is, in words: ``an integer >= 64``, ``one of: otel, xray``."""
        kind = self.kind
        if isinstance(kind, tuple):
            return "one of: " + ", ".join(kind)
        if kind is bool:
            return "true or false"
        if kind is int or kind is float:
            text = "an integer" if kind is int else "a number"
            bounds = [
                f"{sign} {bound:g}"
                for sign, bound in ((">=", self.min), ("<=", self.max), ("<", self.below))
                if bound is not None
            ]
            return f"{text} {' and '.join(bounds)}" if bounds else text
        return self.expects or ("a string" if kind is str else "a valid value")


class Options(Mapping[str, Option]):
    """A middleware's options by name, in declaration order (the order of the docs' tables)."""

    __slots__ = ("_by_name",)

    def __init__(self, *options: Option) -> None:
        self._by_name = {option.name: option for option in options}
        if len(self._by_name) != len(options):
            raise ValueError("an option is declared twice")

    def __getitem__(self, name: str) -> Option:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"Options({', '.join(self._by_name)})"

    def settable(self) -> list[str]:
        """Names of the options the environment and pyproject can set."""
        return [name for name, option in self._by_name.items() if option.settable]

    @classmethod
    def from_signature(cls, middleware: type) -> Options:
        """For a middleware that declares none: its constructor's keyword-only parameters, typed by their
        evaluated annotations (``int``/``float``/``bool``/``str``, optional or not, or a ``Literal``);
        any other annotation makes a code-only option."""
        import inspect  # only for a middleware without OPTIONS: not at every cold start

        declared: list[Option] = []
        init = middleware.__init__  # type: ignore[misc]
        namespace = vars(sys.modules[middleware.__module__]) if middleware.__module__ in sys.modules else {}
        for parameter in inspect.signature(init).parameters.values():
            if parameter.kind is parameter.KEYWORD_ONLY:
                default = None if parameter.default is parameter.empty else parameter.default
                annotation = _evaluated(parameter.annotation, namespace)
                declared.append(Option(parameter.name, _kind(annotation), default, accepts=_rich(annotation)))
        return cls(*declared)


def _evaluated(annotation: Any, namespace: Mapping[str, Any]) -> Any:
    """The annotation as an object (``from __future__ import annotations`` keeps it a string), resolved
    by ``typing.get_type_hints`` in the middleware's module, one parameter at a time."""
    if not isinstance(annotation, str):
        return annotation

    def holder() -> None: ...

    holder.__annotations__ = {"value": annotation}
    try:
        return typing.get_type_hints(holder, globalns=dict(namespace))["value"]
    except Exception:
        return None  # a name only imported for type checking: code only


def _members(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(member for member in typing.get_args(annotation) if member is not type(None))
    return (annotation,)


def _kind(annotation: Any) -> type | tuple[str, ...] | None:
    members = _members(annotation)
    first = members[0] if members else None
    if typing.get_origin(first) is typing.Literal and len(members) == 1:
        return tuple(str(value) for value in typing.get_args(first))
    if first in _SCALARS and (len(members) == 1 or first is str):
        return first  # type: ignore[no-any-return]
    return None


def _rich(annotation: Any) -> Callable[[Any], bool] | None:
    """``str | <something richer>``: the environment gives text, code may pass the richer value."""
    members = _members(annotation)
    if len(members) > 1 and members[0] is str:
        return lambda value: True
    return None


def declared(middleware: type) -> Options:
    """The options of a middleware class: its ``OPTIONS``, or those read from its constructor."""
    options = getattr(middleware, "OPTIONS", None)
    return options if isinstance(options, Options) else Options.from_signature(middleware)


def validated(cls: _T) -> _T:
    """Class decorator: the constructor checks each keyword argument against ``cls.OPTIONS`` (the same
    check as configuration's) before it runs, so ``Middleware(option=bad)`` fails as clearly as a bad
    environment variable."""
    options: Options = cls.OPTIONS  # type: ignore[attr-defined]
    init = cls.__init__  # type: ignore[misc]
    where = f"{cls.name} option "  # type: ignore[attr-defined]

    @wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        for name, value in kwargs.items():
            option = options.get(name)
            if option is not None:
                kwargs[name] = option.check(value, where + name)
        init(self, *args, **kwargs)

    cls.__init__ = __init__  # type: ignore[misc]
    return cls
