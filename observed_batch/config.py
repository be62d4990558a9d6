"""Which middlewares run, with which options: constructor kwargs > environment > pyproject.

Everything is validated when a processor is constructed (cold start), so a typo fails the deploy's
first invocation loudly instead of silently dropping telemetry: every ``OBSERVED_BATCH_*`` variable
must be a core variable (``CORE_VARIABLES``), an option of a built-in (enabled or not: the values of a
built-in that is not enabled are checked too, from its constructor's source, without importing its
module or backend), or belong to a middleware instance in the chain (``OBSERVED_BATCH_<NAME>_*`` for
its ``name``). ``OBSERVED_BATCH_DISABLED=true`` skips all of it.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from observed_batch import plugins
from observed_batch._option_values import check_value as _check_value
from observed_batch._option_values import coerce as _coerce
from observed_batch._option_values import kinds as _kinds
from observed_batch._option_values import parse_bool as parse_bool
from observed_batch._pyproject import pyproject_section
from observed_batch.errors import ConfigError, MissingBackendError
from observed_batch.redaction import ENV_REDACT_PATTERNS
from observed_batch.typing import Middleware

__all__ = [
    "BUILTINS",
    "CORE_VARIABLES",
    "ENV_DISABLED",
    "ENV_MIDDLEWARE",
    "Config",
    "available_builtins",
    "build_middlewares",
    "require_backend",
]

ENV_MIDDLEWARE = "OBSERVED_BATCH_MIDDLEWARE"
ENV_DISABLED = "OBSERVED_BATCH_DISABLED"
ENV_PYPROJECT = "OBSERVED_BATCH_PYPROJECT"
#: Every ``OBSERVED_BATCH_*`` variable that is not a middleware's option. A new core setting is added
#: here, and only here, to be known to the typo check (and to ``observed-batch doctor``).
CORE_VARIABLES: tuple[str, ...] = (ENV_MIDDLEWARE, ENV_DISABLED, ENV_PYPROJECT, ENV_REDACT_PATTERNS)
_ENV_PREFIX = "OBSERVED_BATCH_"


@dataclass(frozen=True)
class _Builtin:
    module: str
    cls: str
    backend: str | None  # importable package the middleware needs (with its default backend)
    extra: str | None  # the pip extra that installs it
    #: The other values of the middleware's ``backend`` option: package needed and extra installing it.
    alternatives: Mapping[str, tuple[str, str | None]] = field(default_factory=dict)
    default_backend: str | None = None  # the ``backend`` option's default, when it has one
    policy: bool = False  # changes outcomes by design (see Middleware.policy): not telemetry


#: Built-in middlewares, in their recommended order (outermost first).
BUILTINS: dict[str, _Builtin] = {
    "metrics": _Builtin("observed_batch.middleware.metrics", "MetricsMiddleware", None, None),
    "tracing": _Builtin(
        "observed_batch.middleware.tracing",
        "TracingMiddleware",
        "opentelemetry.sdk",
        "tracing",
        {"xray": ("aws_xray_sdk", "xray")},
        "otel",
    ),
    "sentry": _Builtin("observed_batch.middleware.sentry", "SentryMiddleware", "sentry_sdk", "sentry"),
    "logging": _Builtin(
        "observed_batch.middleware.logging",
        "LoggingMiddleware",
        "structlog",
        "logging",
        # Powertools is the core dependency: nothing to install.
        {"powertools": ("aws_lambda_powertools.logging", None)},
        "structlog",
    ),
    "timeout_guard": _Builtin("observed_batch.middleware.timeout_guard", "TimeoutGuardMiddleware", None, None),
    "stop_on_failure": _Builtin(
        "observed_batch.middleware.stop_on_failure", "StopOnFailureMiddleware", None, None, policy=True
    ),
    "retry_policy": _Builtin(
        "observed_batch.middleware.retry_policy", "RetryPolicyMiddleware", "boto3", "policies", policy=True
    ),
}
_VALID = ", ".join(BUILTINS)


@dataclass(frozen=True)
class Config:
    """Configuration in code. ``None`` fields fall back to the environment, then to pyproject.

    ``options`` maps a built-in name to its constructor options, e.g.
    ``Config(middleware=["tracing"], options={"tracing": {"max_response_bytes": 512}})``.
    ``redact`` (a ``str -> str`` callable) and ``redact_patterns`` (names of ``redaction.PRESETS`` or
    regular expressions; default ``OBSERVED_BATCH_REDACT_PATTERNS``) apply to every exported text.
    """

    middleware: Sequence[str | Middleware] | None = None
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    disabled: bool = False
    redact: Callable[[str], str] | None = None
    redact_patterns: Sequence[str] | None = None


def is_disabled(environ: Mapping[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    return parse_bool(environ.get(ENV_DISABLED, ""), ENV_DISABLED)


def build_middlewares(
    middleware: Sequence[str | Middleware] | None = None,
    config: Config | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Middleware, ...]:
    """Resolve and instantiate the chain. An explicit ``middleware=`` (even ``[]``) wins over the
    environment; ``OBSERVED_BATCH_DISABLED`` wins over everything."""
    environ = os.environ if environ is None else environ
    if is_disabled(environ) or (config is not None and config.disabled):
        return ()
    pyproject = pyproject_section(environ.get(ENV_PYPROJECT))
    source = "middleware="
    if middleware is None and config is not None and config.middleware is not None:
        middleware, source = config.middleware, "Config.middleware"
    if middleware is None and ENV_MIDDLEWARE in environ:
        middleware = [n.strip() for n in environ[ENV_MIDDLEWARE].split(",") if n.strip()]
        source = ENV_MIDDLEWARE
    if middleware is None:
        middleware = pyproject.get("middleware", [])
        source = "[tool.observed_batch] middleware"
    if isinstance(middleware, str) or not isinstance(middleware, Sequence):
        raise ConfigError(f"{source} must be a list of middleware names or instances, got {middleware!r}")
    code_options = config.options if config is not None else {}
    for name in code_options:
        if name not in BUILTINS and name not in plugins.installed():
            raise ConfigError(f"unknown middleware {name!r} in Config.options; valid: {_VALID}")
    _check_names(middleware, environ, pyproject)

    chain: list[Middleware] = []
    seen: set[str] = set()
    for item in middleware:
        if isinstance(item, str):
            if item not in BUILTINS and item not in plugins.installed():
                valid = ", ".join([*BUILTINS, *sorted(plugins.installed())])
                raise ConfigError(f"unknown middleware {item!r} in {source}; valid: {valid}")
            if item in seen:
                raise ConfigError(f"middleware {item!r} is listed twice in {source}")
            seen.add(item)
            section = pyproject.get(item, {})
            chain.append(_instantiate(item, section, environ, code_options.get(item, {})))
        elif _is_middleware(item):
            chain.append(item)
        else:
            raise ConfigError(f"{item!r} in {source} is neither a middleware name ({_VALID}) nor a Middleware instance")
    return tuple(chain)


def _check_names(middleware: Sequence[Any], environ: Mapping[str, str], pyproject: Mapping[str, Any]) -> None:
    """No variable or pyproject table may name nothing: a typo would silently drop its setting."""
    enabled = {item for item in middleware if isinstance(item, str)}
    owned = {str(owner) for item in middleware if not isinstance(item, str) and (owner := getattr(item, "name", None))}
    check_environment(environ, enabled, owned)
    for table in pyproject:
        if table != "middleware" and table not in BUILTINS and table not in owned and table not in plugins.installed():
            closest = _closest(table, BUILTINS)
            hint = f" (did you mean [tool.observed_batch.{closest}]?)" if closest else ""
            raise ConfigError(f"unknown table [tool.observed_batch.{table}]{hint}; valid: {_VALID}")


def check_environment(environ: Mapping[str, str], enabled: Collection[str] = (), owned: Collection[str] = ()) -> None:
    """Raise ``ConfigError`` for the first ``OBSERVED_BATCH_*`` variable that is no core variable, no
    (valid) option of a built-in, and not under the prefix of a middleware named in ``owned``.

    Options of the built-ins in ``enabled`` are left to their construction, which checks them all.
    """
    prefixes = sorted(((f"{_ENV_PREFIX}{name.upper()}_", name) for name in BUILTINS), key=lambda p: -len(p[0]))
    for variable in sorted(name for name in environ if name.startswith(_ENV_PREFIX)):
        if variable in CORE_VARIABLES:
            continue
        builtin = next((name for prefix, name in prefixes if variable.startswith(prefix)), None)
        if builtin is None:
            # A plugin's variables: checked when it is enabled (its constructor is only read by importing it).
            if any(variable.startswith(f"{_ENV_PREFIX}{name.upper()}_") for name in (*owned, *plugins.installed())):
                continue
            raise _unknown_variable(variable, owned)
        if builtin in enabled:
            continue
        kinds = declared_option_kinds(builtin)
        if kinds is None:
            continue  # its constructor cannot be read without importing its backend: checked when enabled
        option = variable[len(_ENV_PREFIX) + len(builtin) + 1 :].lower()
        if option not in kinds:
            raise _unknown_option(variable, builtin, kinds)
        _coerce(environ[variable], kinds[option], variable)


def _closest(word: str, candidates: Collection[str], prefix: str = "") -> str | None:
    """The candidate closest to ``word``, compared without their common ``prefix`` (which would make
    every ``OBSERVED_BATCH_*`` name look alike)."""
    rest = {candidate[len(prefix) :]: candidate for candidate in candidates if candidate.startswith(prefix)}
    import difflib  # only on a configuration error: not at every cold start

    matches = difflib.get_close_matches(word[len(prefix) :], list(rest), n=1)
    return rest[matches[0]] if matches else None


def _unknown_variable(variable: str, owned: Collection[str]) -> ConfigError:
    names = list(CORE_VARIABLES)
    for builtin in BUILTINS:
        kinds = declared_option_kinds(builtin) or {}
        names += [f"{_ENV_PREFIX}{builtin.upper()}_{option.upper()}" for option in kinds]
    closest = _closest(variable, names, _ENV_PREFIX)
    if closest is not None:
        return ConfigError(f"unknown variable {variable}; did you mean {closest}?")
    middlewares = ", ".join([*BUILTINS, *sorted(owned)])
    return ConfigError(
        f"unknown variable {variable}; valid: {', '.join(CORE_VARIABLES)}, or {_ENV_PREFIX}<MIDDLEWARE>_<OPTION>"
        f" for a middleware in: {middlewares}"
    )


def _unknown_option(variable: str, builtin: str, kinds: Mapping[str, Any]) -> ConfigError:
    prefix = f"{_ENV_PREFIX}{builtin.upper()}_"
    valid = [f"{prefix}{option.upper()}" for option in sorted(kinds)]
    closest = _closest(variable, valid, prefix)
    hint = f" (did you mean {closest}?)" if closest is not None else ""
    return ConfigError(
        f"unknown option {variable} for middleware {builtin!r}{hint}; valid: {', '.join(valid) or '(none)'}"
    )


@lru_cache(maxsize=32)
def _source_option_kinds(module_name: str, class_name: str) -> dict[str, Any] | None:
    try:
        spec = importlib.util.find_spec(module_name)
    except ModuleNotFoundError:
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None  # not there, or shipped without sources
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    arguments = item.args.kwonlyargs
                    return _kinds({a.arg: ast.unparse(a.annotation) if a.annotation else "" for a in arguments})
    return None


def declared_option_kinds(name: str) -> dict[str, Any] | None:
    """``option_kinds`` of built-in ``name`` without importing its module when it is not imported yet:
    read from its constructor's signature in the source, so a disabled built-in's backend stays
    unimported. ``None`` when neither is possible (no source shipped, the built-in not in this version)."""
    spec = BUILTINS[name]
    module = sys.modules.get(spec.module)
    cls = getattr(module, spec.cls, None) if module is not None else None
    if isinstance(cls, type):
        return option_kinds(cls)
    return _source_option_kinds(spec.module, spec.cls)


def _is_middleware(item: object) -> bool:
    return isinstance(item, Middleware) or any(
        callable(getattr(item, hook, None)) for hook in ("wrap_record", "on_batch_start", "on_batch_end")
    )


def require_backend(name: str, backend: str | None = None) -> None:
    """Raise ``MissingBackendError`` (naming the extra to install) when the package that built-in ``name``
    needs with ``backend`` (``None``: its default backend) cannot be imported. Constructors call it, so a
    middleware built in code fails as clearly as one enabled by name."""
    spec = BUILTINS[name]
    package, extra = spec.backend, spec.extra
    if backend is not None and backend != spec.default_backend and backend in spec.alternatives:
        package, extra = spec.alternatives[backend]
    if package is not None and extra is not None and not _importable(package):
        raise MissingBackendError(name, package.split(".")[0], extra)


def builtin_class(name: str, backend: str | None = None, *, check_backend: bool = True) -> type[Middleware]:
    """Import a built-in middleware class, with a clear error if it or the package of its ``backend``
    (``None``: the default one) is missing. ``check_backend=False`` only imports the class: its module
    imports no backend, each backend is imported by the constructor that selects it."""
    spec = BUILTINS[name]
    if check_backend:
        require_backend(name, backend)
    try:
        module = importlib.import_module(spec.module)
    except ModuleNotFoundError as exc:
        if exc.name != spec.module:
            raise
        raise ConfigError(f"built-in middleware {name!r} is not available in this version of observed_batch") from None
    cls: type[Middleware] = getattr(module, spec.cls)
    return cls


def available_builtins(*, policies: bool = True) -> list[str]:
    """Built-in names usable here (their module and backend import), in the recommended order; without
    the policy middlewares (which change outcomes by design) when ``policies=False``."""
    names = []
    for name in BUILTINS:
        if not policies and BUILTINS[name].policy:
            continue
        try:
            builtin_class(name)
        except (ConfigError, ImportError):
            continue
        names.append(name)
    return names


def _importable(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except ModuleNotFoundError:
        return False


def _instantiate(
    name: str, pyproject: Mapping[str, Any], environ: Mapping[str, str], code: Mapping[str, Any]
) -> Middleware:
    prefix = f"{_ENV_PREFIX}{name.upper()}_"
    if name in BUILTINS:
        # The package the chosen backend needs is checked before anything is imported (modules of built-ins
        # with an optional backend import none; the others import theirs at the top).
        backend = code.get("backend", environ.get(f"{prefix}BACKEND", pyproject.get("backend")))
        require_backend(name, backend.strip() if isinstance(backend, str) else None)
        cls: type[Middleware] | None = builtin_class(name, check_backend=False)
    else:
        cls = plugins.plugin_class(name)
    assert cls is not None  # a known name: checked by the caller
    kinds = option_kinds(cls)
    valid = ", ".join(sorted(kinds)) or "(none)"
    options: dict[str, Any] = {}
    for option, value in pyproject.items():
        if option not in kinds:
            raise ConfigError(f"unknown option {option!r} in [tool.observed_batch.{name}]; valid: {valid}")
        options[option] = _check_value(value, kinds[option], f"[tool.observed_batch.{name}] {option}")
    for variable, raw in environ.items():
        if not variable.startswith(prefix):
            continue
        option = variable[len(prefix) :].lower()
        if option not in kinds:
            raise _unknown_option(variable, name, kinds)
        options[option] = _coerce(raw, kinds[option], variable)
    for option, value in code.items():
        if option not in kinds and option not in _constructor_parameters(cls):
            raise ConfigError(f"unknown option {option!r} for middleware {name!r}; valid: {valid}")
        options[option] = value
    try:
        return cls(**options)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid options for middleware {name!r}: {exc}") from exc


def _constructor_parameters(cls: type) -> set[str]:
    return {p.name for p in inspect.signature(cls).parameters.values() if p.kind is p.KEYWORD_ONLY}


def option_kinds(cls: type) -> dict[str, Any]:
    """Options settable from env/pyproject: keyword-only constructor parameters of scalar type.

    Returns option -> ``int``/``float``/``bool``/``str`` or a tuple of allowed strings (Literal).
    Backend objects (tracer provider, sink, ...) are code-only.
    """
    annotations: dict[str, str] = {}
    for parameter in inspect.signature(cls).parameters.values():
        if parameter.kind is parameter.KEYWORD_ONLY:
            annotation = parameter.annotation
            text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
            annotations[parameter.name] = text
    return _kinds(annotations)
