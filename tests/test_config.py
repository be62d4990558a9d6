"""Configuration: constructor kwargs > environment > pyproject; errors at construction, naming the value."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

import observed_batch as ob
from observed_batch import _pyproject, config
from observed_batch.options import Options, declared
from observed_batch.testing import RecordingMiddleware, sqs_event

VALID = "valid: metrics, tracing, sentry, logging, timeout_guard, stop_on_failure, retry_policy"


@pytest.fixture
def dummy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register a test built-in named 'dummy' (and broken ones) next to the real ones."""
    monkeypatch.setitem(config.BUILTINS, "dummy", config._Builtin("dummy_middleware", "DummyMiddleware", None, None))
    monkeypatch.setitem(
        config.BUILTINS, "type_error", config._Builtin("dummy_middleware", "TypeErrorMiddleware", None, None)
    )
    monkeypatch.setitem(
        config.BUILTINS, "missing_backend", config._Builtin("dummy_middleware", "X", "no_such_backend_pkg", "tracing")
    )
    monkeypatch.setitem(
        config.BUILTINS, "unreleased", config._Builtin("observed_batch.middleware.unreleased", "X", None, None)
    )
    monkeypatch.setitem(config.BUILTINS, "broken_import", config._Builtin("broken_middleware", "X", None, None))


def options_of(processor: ob.BatchProcessor) -> dict[str, Any]:
    (middleware,) = processor.middlewares
    return middleware.options  # type: ignore[attr-defined, no-any-return]


def test_no_configuration_means_no_middleware() -> None:
    assert ob.BatchProcessor(ob.EventType.SQS).middlewares == ()


def test_unknown_middleware_in_env_names_the_value_and_the_valid_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a typo in the environment
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", "metric")

    # WHEN a processor is constructed THEN it fails at once, saying what is wrong and what is valid
    with pytest.raises(ob.ConfigError) as raised:
        ob.BatchProcessor(ob.EventType.SQS)
    assert str(raised.value) == f"unknown middleware 'metric' in OBSERVED_BATCH_MIDDLEWARE; {VALID}"
    assert isinstance(raised.value, ValueError)


def test_unknown_middleware_in_kwargs_names_the_value() -> None:
    with pytest.raises(ob.ConfigError, match=f"unknown middleware 'tracer' in middleware=; {VALID}"):
        ob.AsyncBatchProcessor(ob.EventType.SQS, middleware=["tracer"])


def test_listing_a_middleware_twice_is_an_error(dummy: None) -> None:
    with pytest.raises(ob.ConfigError, match="middleware 'dummy' is listed twice in middleware="):
        ob.BatchProcessor(ob.EventType.SQS, middleware=["dummy", "dummy"])


def test_middleware_must_be_a_list(dummy: None) -> None:
    with pytest.raises(ob.ConfigError, match="must be a list of middleware names or instances"):
        ob.BatchProcessor(ob.EventType.SQS, middleware="dummy")  # type: ignore[arg-type]


def test_objects_that_are_not_middlewares_are_rejected() -> None:
    with pytest.raises(ob.ConfigError, match="42 in middleware= is neither a middleware name"):
        ob.BatchProcessor(ob.EventType.SQS, middleware=[42])  # type: ignore[list-item]


def test_duck_typed_middleware_objects_are_accepted() -> None:
    # GIVEN an object with the hooks but not a Middleware subclass
    class Duck:
        def on_batch_end(self, batch: Any, summary: Any) -> None:
            self.summary = summary

    duck = Duck()
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[duck])  # type: ignore[list-item]

    # WHEN processed THEN its hook ran
    ob.process_partial_response(sqs_event(2), lambda record: None, processor)
    assert duck.summary.successes == 2


def test_env_enables_builtins_in_the_order_written(dummy: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", " dummy , ")
    processor = ob.BatchProcessor(ob.EventType.SQS)
    assert [m.name for m in processor.middlewares] == ["dummy"]


def test_explicit_middleware_list_wins_over_env(dummy: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the environment enabling a middleware
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", "dummy")

    # WHEN the code passes an explicit (empty) list THEN the code wins
    assert ob.BatchProcessor(ob.EventType.SQS, middleware=[]).middlewares == ()
    recorder = RecordingMiddleware()
    assert ob.BatchProcessor(ob.EventType.SQS, middleware=[recorder]).middlewares == (recorder,)


def test_kill_switch_wins_over_everything(dummy: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN middleware configured in code and env, and the kill switch on
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", "dummy")
    monkeypatch.setenv("OBSERVED_BATCH_DISABLED", "TRUE")
    recorder = RecordingMiddleware()

    # WHEN processing THEN it is pure Powertools: no chain at all
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[recorder], config=ob.Config(middleware=["dummy"]))
    assert processor.middlewares == ()
    ob.process_partial_response(sqs_event(1), lambda record: None, processor)
    assert recorder.events == []


def test_kill_switch_with_a_bad_value_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSERVED_BATCH_DISABLED", "maybe")
    with pytest.raises(ob.ConfigError, match="OBSERVED_BATCH_DISABLED='maybe' is not a boolean"):
        ob.BatchProcessor(ob.EventType.SQS)


def test_config_object_disabled_turns_the_chain_off() -> None:
    processor = ob.BatchProcessor(ob.EventType.SQS, config=ob.Config(middleware=[RecordingMiddleware()], disabled=True))
    assert processor.middlewares == ()


def test_config_object_middleware_and_options(dummy: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN env options and a Config with its own options
    monkeypatch.setenv("OBSERVED_BATCH_DUMMY_MAX_BYTES", "10")
    monkeypatch.setenv("OBSERVED_BATCH_DUMMY_LABEL", "from-env")
    cfg = ob.Config(middleware=["dummy"], options={"dummy": {"max_bytes": 20, "backend": "obj"}})

    # WHEN constructed THEN code options win over env, env over defaults
    options = options_of(ob.BatchProcessor(ob.EventType.SQS, config=cfg))
    assert (options["max_bytes"], options["label"], options["backend"]) == (20, "from-env", "obj")


def test_config_object_without_middleware_falls_back_to_env(dummy: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", "dummy")
    processor = ob.BatchProcessor(ob.EventType.SQS, config=ob.Config(options={"dummy": {"ratio": 0.5}}))
    assert options_of(processor)["ratio"] == 0.5


def test_config_options_for_unknown_middleware_is_an_error() -> None:
    with pytest.raises(ob.ConfigError, match=f"unknown middleware 'trace' in Config.options; {VALID}"):
        ob.BatchProcessor(ob.EventType.SQS, config=ob.Config(options={"trace": {}}))


def test_config_options_unknown_option_is_an_error(dummy: None) -> None:
    cfg = ob.Config(middleware=["dummy"], options={"dummy": {"max_byte": 1}})
    with pytest.raises(ob.ConfigError, match="unknown option 'max_byte' for middleware 'dummy'; valid: enabled,"):
        ob.BatchProcessor(ob.EventType.SQS, config=cfg)


@pytest.mark.parametrize(
    ("variable", "value", "option", "expected"),
    [
        ("MAX_BYTES", "512", "max_bytes", 512),
        ("RATIO", "0.25", "ratio", 0.25),
        ("ENABLED", "yes", "enabled", True),
        ("ENABLED", "off", "enabled", False),
        ("LABEL", " orders ", "label", "orders"),
        ("LIMIT", "7", "limit", 7),
        ("MODE", "batch", "mode", "batch"),
    ],
)
def test_env_options_are_typed(
    dummy: None, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, option: str, expected: Any
) -> None:
    # GIVEN an option set by env
    monkeypatch.setenv(f"OBSERVED_BATCH_DUMMY_{variable}", value)

    # WHEN the built-in is enabled THEN it receives a typed value
    assert options_of(ob.BatchProcessor(ob.EventType.SQS, middleware=["dummy"]))[option] == expected


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MAX_BYTES", "lots", "OBSERVED_BATCH_DUMMY_MAX_BYTES='lots' is not an integer"),
        ("MAX_BYTES", "-1", "OBSERVED_BATCH_DUMMY_MAX_BYTES=-1 must not be negative"),
        ("RATIO", "half", "OBSERVED_BATCH_DUMMY_RATIO='half' is not a number"),
        ("RATIO", "-0.5", "OBSERVED_BATCH_DUMMY_RATIO=-0.5 must not be negative"),
        ("ENABLED", "perhaps", "OBSERVED_BATCH_DUMMY_ENABLED='perhaps' is not a boolean"),
        ("MODE", "sometimes", "OBSERVED_BATCH_DUMMY_MODE='sometimes' is not one of: per_record, batch"),
        (
            "MAX_BYTE",
            "1",
            "unknown option OBSERVED_BATCH_DUMMY_MAX_BYTE for middleware 'dummy'"
            " (did you mean OBSERVED_BATCH_DUMMY_MAX_BYTES?); valid: OBSERVED_BATCH_DUMMY_ENABLED, ",
        ),
        ("MAX_BYTES", "20000", "max_bytes=20000 exceeds 10000"),
    ],
)
def test_bad_env_option_values_name_the_variable(
    dummy: None, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"OBSERVED_BATCH_DUMMY_{variable}", value)
    with pytest.raises(ob.ConfigError) as raised:
        ob.BatchProcessor(ob.EventType.SQS, middleware=["dummy"])
    assert str(raised.value).startswith(message)


# -- OBSERVED_BATCH_* variables that name nothing ------------------------------------------------------
@pytest.mark.parametrize(
    ("variable", "message"),
    [
        (
            "OBSERVED_BATCH_TRACNG_MAX_RESPONSE_BYTES",
            "unknown variable OBSERVED_BATCH_TRACNG_MAX_RESPONSE_BYTES;"
            " did you mean OBSERVED_BATCH_TRACING_MAX_RESPONSE_BYTES?",
        ),
        (
            "OBSERVED_BATCH_MIDDLEWARES",
            "unknown variable OBSERVED_BATCH_MIDDLEWARES; did you mean OBSERVED_BATCH_MIDDLEWARE?",
        ),
        ("OBSERVED_BATCH_DISABLE", "unknown variable OBSERVED_BATCH_DISABLE; did you mean OBSERVED_BATCH_DISABLED?"),
        (
            "OBSERVED_BATCH_TIMEOUTGUARD_MIN_REMAINING_MS",
            "unknown variable OBSERVED_BATCH_TIMEOUTGUARD_MIN_REMAINING_MS;"
            " did you mean OBSERVED_BATCH_TIMEOUT_GUARD_MIN_REMAINING_MS?",
        ),
        (
            "OBSERVED_BATCH_ZZZ",
            "unknown variable OBSERVED_BATCH_ZZZ; valid: OBSERVED_BATCH_MIDDLEWARE, OBSERVED_BATCH_DISABLED,"
            " OBSERVED_BATCH_PYPROJECT, OBSERVED_BATCH_REDACT_PATTERNS, or OBSERVED_BATCH_<MIDDLEWARE>_<OPTION>"
            " for a middleware in: metrics,",
        ),
    ],
)
def test_a_variable_naming_nothing_is_an_error_with_a_suggestion(
    monkeypatch: pytest.MonkeyPatch, variable: str, message: str
) -> None:
    # GIVEN a misspelt OBSERVED_BATCH_* variable (and the metrics middleware enabled, so this is no no-op)
    monkeypatch.setenv(variable, "100")

    # WHEN a processor is constructed THEN a ConfigError names the variable and the closest known one
    with pytest.raises(ob.ConfigError) as raised:
        ob.BatchProcessor(ob.EventType.SQS, middleware=["metrics"])
    assert str(raised.value).startswith(message)


def test_a_variable_naming_nothing_fails_even_without_middleware(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN no middleware configured but a typo of the variable that would enable them
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARES", "metrics")

    # WHEN a processor is constructed THEN the typo is reported rather than running without telemetry
    with pytest.raises(ob.ConfigError, match="did you mean OBSERVED_BATCH_MIDDLEWARE"):
        ob.BatchProcessor(ob.EventType.SQS)


def test_the_kill_switch_skips_the_variable_check(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a typo and the kill switch
    monkeypatch.setenv("OBSERVED_BATCH_TRACNG_MODE", "batch")
    monkeypatch.setenv("OBSERVED_BATCH_DISABLED", "true")

    # WHEN a processor is constructed THEN pure Powertools: nothing is checked, nothing fails
    assert ob.BatchProcessor(ob.EventType.SQS).middlewares == ()


def test_core_variables_are_one_tuple() -> None:
    # GIVEN / THEN the core settings are known in one place (new ones are added there)
    assert config.CORE_VARIABLES == (
        "OBSERVED_BATCH_MIDDLEWARE",
        "OBSERVED_BATCH_DISABLED",
        "OBSERVED_BATCH_PYPROJECT",
        "OBSERVED_BATCH_REDACT_PATTERNS",
    )


def test_a_new_core_variable_is_known_once_added_to_the_tuple(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a core variable another part of the library adds
    monkeypatch.setattr(config, "CORE_VARIABLES", (*config.CORE_VARIABLES, "OBSERVED_BATCH_DEADLINE_RESERVE_MS"))
    monkeypatch.setenv("OBSERVED_BATCH_DEADLINE_RESERVE_MS", "500")

    # WHEN a processor is constructed THEN it is accepted
    assert ob.BatchProcessor(ob.EventType.SQS).middlewares == ()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("OBSERVED_BATCH_DUMMY_MAX_BYTES", "lots", "OBSERVED_BATCH_DUMMY_MAX_BYTES='lots' is not an integer"),
        ("OBSERVED_BATCH_DUMMY_MODE", "turbo", "OBSERVED_BATCH_DUMMY_MODE='turbo' is not one of: per_record, batch"),
        ("OBSERVED_BATCH_DUMMY_MAXBYTES", "1", "unknown option OBSERVED_BATCH_DUMMY_MAXBYTES for middleware 'dummy'"),
    ],
)
def test_options_of_a_builtin_that_is_not_enabled_are_still_checked(
    dummy: None, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    # GIVEN a bad option of a built-in that is not enabled
    monkeypatch.setenv(variable, value)

    # WHEN a processor without it is constructed THEN the same error as if it were enabled
    with pytest.raises(ob.ConfigError) as raised:
        ob.BatchProcessor(ob.EventType.SQS)
    assert str(raised.value).startswith(message)


def test_valid_options_of_a_builtin_that_is_not_enabled_are_accepted(
    dummy: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN good options of a built-in that is not enabled (its constructor's own checks are not run)
    monkeypatch.setenv("OBSERVED_BATCH_DUMMY_MAX_BYTES", "20000")
    monkeypatch.setenv("OBSERVED_BATCH_DUMMY_MODE", "batch")

    # WHEN / THEN the processor is built without it
    assert ob.BatchProcessor(ob.EventType.SQS).middlewares == ()


def test_every_builtin_declares_exactly_its_constructor_options() -> None:
    # GIVEN every real built-in: its declared OPTIONS and its constructor's keyword arguments
    for name in config.available_builtins():
        cls = config.builtin_class(name)
        declaration = config.declared_options(name)
        assert declaration is not None
        assert isinstance(getattr(cls, "OPTIONS", None), Options), name
        parameters = {p.name: p.default for p in inspect.signature(cls).parameters.values() if p.kind is p.KEYWORD_ONLY}

        # THEN they name the same options with the same defaults, and every default passes its own check
        assert list(declaration) == list(parameters), name
        for option in declaration.values():
            assert option.default == parameters[option.name], (name, option.name)
            assert option.check(option.default, option.name) == option.default
            assert option.doc, (name, option.name)


def test_options_of_a_builtin_that_cannot_be_imported_are_not_judged(
    dummy: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a built-in whose module is missing (the function may run a newer observed_batch)
    monkeypatch.setitem(config.BUILTINS, "ghost", config._Builtin("no_such_module_xyz.inner", "X", None, None))
    monkeypatch.setenv("OBSERVED_BATCH_GHOST_LEVEL", "3")

    # WHEN a processor without it is constructed THEN its variables are left to its construction
    assert ob.BatchProcessor(ob.EventType.SQS).middlewares == ()
    assert config.declared_options("ghost") is None
    # AND so are those of a built-in whose class is not in its module
    monkeypatch.setitem(config.BUILTINS, "missing", config._Builtin("dummy_middleware", "Missing", None, None))
    assert config.declared_options("missing") is None


def test_an_inherited_constructor_gives_the_same_options(dummy: None) -> None:
    # GIVEN a middleware whose constructor (and so its options) is inherited
    from dummy_middleware import DummyMiddleware, NoInit

    # WHEN / THEN its options are its parent's
    assert dict(declared(NoInit)) == dict(declared(DummyMiddleware))


class Plugin(ob.Middleware):
    name = "acme_audit"


def test_a_middleware_instance_owns_the_variables_under_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a third-party middleware reading OBSERVED_BATCH_ACME_AUDIT_* itself
    monkeypatch.setenv("OBSERVED_BATCH_ACME_AUDIT_TABLE", "audit")

    # WHEN it is in the chain THEN its variables are its business
    assert ob.BatchProcessor(ob.EventType.SQS, middleware=[Plugin()]).middlewares != ()

    # AND without it in the chain, they name nothing
    with pytest.raises(ob.ConfigError, match="unknown variable OBSERVED_BATCH_ACME_AUDIT_TABLE"):
        ob.BatchProcessor(ob.EventType.SQS, middleware=[])


def test_a_builtin_instance_does_not_hide_typos_in_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a built-in passed as an instance, and a misspelt option of it in the environment
    from observed_batch.middleware import MetricsMiddleware

    monkeypatch.setenv("OBSERVED_BATCH_METRICS_NAMESPAC", "Shop")

    # WHEN / THEN the typo is still reported
    with pytest.raises(ob.ConfigError, match="did you mean OBSERVED_BATCH_METRICS_NAMESPACE"):
        ob.BatchProcessor(ob.EventType.SQS, middleware=[MetricsMiddleware()])


def test_constructor_type_errors_become_config_errors(dummy: None) -> None:
    with pytest.raises(ob.ConfigError, match="invalid options for middleware 'type_error': size is broken"):
        ob.BatchProcessor(ob.EventType.SQS, middleware=["type_error"])


def test_missing_backend_names_the_extra_to_install(dummy: None) -> None:
    with pytest.raises(ob.MissingBackendError) as raised:
        ob.BatchProcessor(ob.EventType.SQS, middleware=["missing_backend"])
    assert str(raised.value) == (
        "middleware 'missing_backend' needs the 'no_such_backend_pkg' package; "
        'install it with: pip install "observed-batch[tracing]"'
    )
    assert isinstance(raised.value, ob.ConfigError)


def test_missing_parent_package_of_a_backend_is_reported(dummy: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        config.BUILTINS, "nested", config._Builtin("dummy_middleware", "X", "no_pkg_xyz.sdk", "tracing")
    )
    with pytest.raises(ob.MissingBackendError, match="needs the 'no_pkg_xyz' package"):
        ob.BatchProcessor(ob.EventType.SQS, middleware=["nested"])


def test_a_builtin_not_yet_available_is_an_error_not_a_silent_noop(dummy: None) -> None:
    with pytest.raises(ob.ConfigError, match="built-in middleware 'unreleased' is not available in this version"):
        ob.BatchProcessor(ob.EventType.SQS, middleware=["unreleased"])


def test_available_builtins_lists_what_imports_here(dummy: None) -> None:
    # GIVEN the real built-ins plus test entries whose module or backend is missing
    available = config.available_builtins()

    # THEN the importable ones are listed in order, the others left out
    assert available[:5] == ["metrics", "tracing", "sentry", "logging", "timeout_guard"]
    assert "dummy" in available
    assert not {"unreleased", "missing_backend", "broken_import"} & set(available)


def test_import_errors_inside_a_builtin_are_not_hidden(dummy: None) -> None:
    with pytest.raises(ModuleNotFoundError):
        ob.BatchProcessor(ob.EventType.SQS, middleware=["broken_import"])


def test_middleware_package_exposes_builtins_lazily() -> None:
    import observed_batch.middleware as builtins

    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        builtins.Nope  # noqa: B018
    # AND its __all__ (a literal for type checkers) names exactly the registry's classes and the Sentry transport
    shipped = [b.cls for b in config.BUILTINS.values() if b.module.startswith("observed_batch.middleware.")]
    shipped.append("LeanSentryTransport")
    assert sorted(builtins.__all__) == sorted(shipped)
    assert all(getattr(builtins, name).__name__ == name for name in builtins.__all__)


# -- pyproject ------------------------------------------------------------------------------------
def write_pyproject(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text(text)
    monkeypatch.setenv("OBSERVED_BATCH_PYPROJECT", str(path))
    _pyproject.read_pyproject.cache_clear()


def test_pyproject_section_configures_middleware_and_options(
    dummy: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a pyproject section
    write_pyproject(
        tmp_path,
        '[tool.observed_batch]\nmiddleware = ["dummy"]\n[tool.observed_batch.dummy]\nmax_bytes = 64\nratio = 1\n',
        monkeypatch,
    )

    # WHEN a processor is built without code config THEN pyproject applies, env overrides it
    assert options_of(ob.BatchProcessor(ob.EventType.SQS))["max_bytes"] == 64
    assert options_of(ob.BatchProcessor(ob.EventType.SQS))["ratio"] == 1.0
    monkeypatch.setenv("OBSERVED_BATCH_DUMMY_MAX_BYTES", "128")
    assert options_of(ob.BatchProcessor(ob.EventType.SQS))["max_bytes"] == 128


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[tool.observed_batch]\nmiddleware = ["nope"]\n', "unknown middleware 'nope' in [tool.observed_batch]"),
        (
            "[tool.observed_batch.dumy]\nmax_bytes = 1\n",
            "unknown table [tool.observed_batch.dumy] (did you mean [tool.observed_batch.dummy]?); valid: ",
        ),
        ("[tool.observed_batch.dummy]\nmax_bytez = 1\n", "unknown option 'max_bytez' in [tool.observed_batch.dummy]"),
        ('[tool.observed_batch.dummy]\nmax_bytes = "1"\n', "[tool.observed_batch.dummy] max_bytes='1' must be of type"),
        ("[tool.observed_batch.dummy]\nenabled = 1\n", "[tool.observed_batch.dummy] enabled=1 must be of type bool"),
        ("[tool.observed_batch.dummy]\nmax_bytes = true\n", "max_bytes=True must be of type int"),
        ("[tool.observed_batch\n", "is not valid TOML"),
        ("[tool]\nobserved_batch = 3\n", "[tool.observed_batch] in"),
    ],
)
def test_bad_pyproject_values_are_config_errors(
    dummy: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    write_pyproject(tmp_path, text, monkeypatch)
    with pytest.raises(ob.ConfigError) as raised:
        ob.BatchProcessor(ob.EventType.SQS, middleware=None if "middleware" in text else ["dummy"])
    assert message in str(raised.value)


def test_undeclared_options_are_read_from_the_constructor_signature(dummy: None) -> None:
    # GIVEN a middleware without OPTIONS (a plugin written before declarations)
    from dummy_middleware import DummyMiddleware

    # WHEN its options are read THEN scalar and Literal parameters are settable, the others code only
    assert {name: option.kind for name, option in declared(DummyMiddleware).items()} == {
        "max_bytes": int,
        "ratio": float,
        "enabled": bool,
        "label": str,
        "limit": int,
        "mode": ("per_record", "batch"),
        "backend": None,
    }


def test_undeclared_options_leave_positional_parameters_out() -> None:
    # GIVEN a constructor with a positional parameter and a keyword-only one
    class Positional:
        def __init__(self, size: int, *, mode: str = "a") -> None:
            self.size, self.mode = size, mode

    # WHEN / THEN only the keyword-only one is an option
    assert list(declared(Positional)) == ["mode"]
