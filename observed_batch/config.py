"""Which middlewares run, with which options: constructor kwargs > environment > pyproject.

Everything is validated when a processor is constructed (cold start), so a typo fails the deploy's
first invocation loudly instead of silently dropping telemetry: every ``OBSERVED_BATCH_*`` variable
must be a core variable (``CORE_VARIABLES``), an option of a built-in (enabled or not: the values of a
built-in that is not enabled are checked too, against its declared ``OPTIONS``, importing its module
but not its backend), or belong to a middleware instance in the chain (``OBSERVED_BATCH_<NAME>_*`` for
its ``name``). Values from the environment, pyproject and code all go through ``Option.check``
(``observed_batch.options``). ``OBSERVED_BATCH_DISABLED=true`` skips all of it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from observed_batch import plugins
from observed_batch._pyproject import pyproject_section
from observed_batch.errors import ConfigError, MissingBackendError
from observed_batch.options import Options, declared
from observed_batch.options import parse_bool as parse_bool
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
    "declared_options",
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
        options = declared_options(builtin)
        if options is None:
            continue  # not importable here (the function may run a newer observed_batch): checked when enabled
        option = options.get(variable[len(_ENV_PREFIX) + len(builtin) + 1 :].lower())
        if option is None or not option.settable:
            raise _unknown_option(variable, builtin, options)
        option.parse(environ[variable], variable)


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
        options = declared_options(builtin) or Options()
        names += [options[option].variable(builtin) for option in options.settable()]
    closest = _closest(variable, names, _ENV_PREFIX)
    if closest is not None:
        return ConfigError(f"unknown variable {variable}; did you mean {closest}?")
    middlewares = ", ".join([*BUILTINS, *sorted(owned)])
    return ConfigError(
        f"unknown variable {variable}; valid: {', '.join(CORE_VARIABLES)}, or {_ENV_PREFIX}<MIDDLEWARE>_<OPTION>"
        f" for a middleware in: {middlewares}"
    )


def _unknown_option(variable: str, builtin: str, options: Options) -> ConfigError:
    prefix = f"{_ENV_PREFIX}{builtin.upper()}_"
    valid = [f"{prefix}{option.upper()}" for option in sorted(options.settable())]
    closest = _closest(variable, valid, prefix)
    hint = f" (did you mean {closest}?)" if closest is not None else ""
    return ConfigError(
        f"unknown option {variable} for middleware {builtin!r}{hint}; valid: {', '.join(valid) or '(none)'}"
    )


def declared_options(name: str) -> Options | None:
    """The declared options of built-in ``name``, importing its module (never its backend: the modules
    of the built-ins import theirs in the constructor). ``None`` when the module or class is not there
    (a built-in of a newer observed_batch) or does not import: left to its construction if enabled."""
    spec = BUILTINS[name]
    try:
        module = importlib.import_module(spec.module)
    except ImportError:
        return None
    cls = getattr(module, spec.cls, None)
    return declared(cls) if isinstance(cls, type) else None


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
    declaration = declared(cls)
    valid = ", ".join(sorted(declaration.settable())) or "(none)"
    options: dict[str, Any] = {}
    for key, value in pyproject.items():
        option = declaration.get(key)
        if option is None or not option.settable:
            raise ConfigError(f"unknown option {key!r} in [tool.observed_batch.{name}]; valid: {valid}")
        options[key] = option.check(value, f"[tool.observed_batch.{name}] {key}")
    for variable, raw in environ.items():
        if not variable.startswith(prefix):
            continue
        option = declaration.get(variable[len(prefix) :].lower())
        if option is None or not option.settable:
            raise _unknown_option(variable, name, declaration)
        options[option.name] = option.parse(raw, variable)
    for key, value in code.items():
        option = declaration.get(key)
        if option is None:
            raise ConfigError(f"unknown option {key!r} for middleware {name!r}; valid: {valid}")
        options[key] = option.check(value, f"{name} option {key}")
    try:
        return cls(**options)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid options for middleware {name!r}: {exc}") from exc
