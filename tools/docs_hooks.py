"""mkdocs hook: facts the code owns are written into the docs from the code, so they cannot drift.

Options come from the middlewares' declarations (``OPTIONS``, see ``observed_batch.options``): name,
type and bounds, default, environment variable and meaning are written once, in the code.

- ``<!-- generated: options-table NAME -->``, under the ``## Options`` heading of
  ``docs/middleware/NAME.md``: the table of built-in ``NAME``'s options.
- ``<!-- generated: options -->``: the configuration reference, every built-in (from
  ``observed_batch.config.BUILTINS``) and every option, links pointing back to the middleware pages.

The build fails (``DocsDrift``) when a built-in's page does not generate its Options table (or adds
hand-written rows to it), or when a declaration disagrees with the constructor (an option missing
on either side, another default). ``tests/test_docs_site.py`` runs the same checks, so ``pytest``
catches drift without mkdocs.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

from observed_batch import config
from observed_batch.options import Option, Options, declared

__all__ = [
    "DocsDrift",
    "alarms_reference",
    "check_declaration",
    "on_page_markdown",
    "options_reference",
    "options_table",
    "render",
]

DOCS = Path(__file__).resolve().parent.parent / "docs"
_MARKER = re.compile(r"<!-- generated: ([\w-]+)(?: ([\w-]+))? -->")
_CODE_ONLY = "code only"


class DocsDrift(Exception):
    """A page states something about the configuration that the code does not."""


def check_declaration(name: str, cls: type) -> Options:
    """The declared options of built-in ``name``, if they match its constructor's keyword arguments."""
    options = declared(cls)
    parameters = {p.name: p for p in inspect.signature(cls).parameters.values() if p.kind is p.KEYWORD_ONLY}
    where = f"{cls.__name__}.OPTIONS"
    for missing in [option for option in parameters if option not in options]:
        raise DocsDrift(f"{where} does not declare the constructor's option {missing!r}")
    for extra in [option for option in options if option not in parameters]:
        raise DocsDrift(f"{where} declares {extra!r}, which the constructor does not take")
    for option in options.values():
        default = parameters[option.name].default
        if default != option.default or isinstance(default, bool) != isinstance(option.default, bool):
            raise DocsDrift(f"{where}: {option.name!r} defaults to {option.default!r}, the constructor to {default!r}")
    return options


def _type(option: Option) -> str:
    kind = option.kind
    if kind is None:
        return option.expects or "any object"
    if isinstance(kind, tuple):
        return "one of " + ", ".join(f"`{value}`" for value in kind)
    cell = f"`{kind.__name__}`"
    if kind is int or kind is float:
        bounds = (("≥", option.min), ("≤", option.max), ("<", option.below))
        cell += "".join(f", {sign} {bound:g}" for sign, bound in bounds if bound is not None)
    if option.accepts is not None:
        cell += f" (in code also: {option.expects})"
    return cell


def _default(option: Option) -> str:
    if option.default_doc:
        return option.default_doc
    default = option.default
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    return "none" if default is None or default == "" else f"`{default}`"


def _rows(name: str, options: Options, page: str = "") -> list[str]:
    """Table rows; ``page`` (a path to the middleware page) rewrites the meanings' in-page links."""
    rows = [
        "| option | env var | type | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for option in options.values():
        env = f"`{option.variable(name)}`" if option.settable else _CODE_ONLY
        meaning = option.doc.replace("](#", f"]({page}#") if page else option.doc
        rows.append(f"| `{option.name}` | {env} | {_type(option)} | {_default(option)} | {meaning} |")
    return rows


def options_table(name: str | None, docs: Path = DOCS) -> str:
    """``<!-- generated: options-table NAME -->``: the Options table of built-in ``NAME``."""
    if name not in config.BUILTINS:
        raise DocsDrift(f"options-table needs the name of a built-in ({', '.join(config.BUILTINS)}), got {name!r}")
    options = check_declaration(name, config.builtin_class(name))
    return "\n".join(_rows(name, options)) + "\n"


def _check_page(name: str, docs: Path) -> None:
    """The page of built-in ``name`` generates its Options table, and writes no row of its own."""
    where = f"docs/middleware/{name}.md"
    markdown = (docs / "middleware" / f"{name}.md").read_text()
    section = re.search(r"^## Options\n(.*?)(?=^## |\Z)", markdown, re.DOTALL | re.MULTILINE)
    if section is None:
        raise DocsDrift(f"{where}: no '## Options' section")
    if f"<!-- generated: options-table {name} -->" not in section.group(1):
        raise DocsDrift(
            f"{where}: its Options section must generate the table: <!-- generated: options-table {name} -->"
        )
    rows = [line for line in section.group(1).splitlines() if line.startswith("| `")]
    if rows:
        raise DocsDrift(f"{where}: hand-written option rows (declare them in OPTIONS instead): {rows[0]}")


def _middleware_section(name: str, docs: Path) -> list[str]:
    cls = config.builtin_class(name)
    options = check_declaration(name, cls)
    _check_page(name, docs)
    out = [
        "",
        f"## `{name}`",
        "",
        f"`observed_batch.middleware.{cls.__name__}`: details on the [{name} page](../middleware/{name}.md#options).",
        "",
    ]
    return out + _rows(name, options, f"../middleware/{name}.md")


def options_reference(_: str | None = None, docs: Path = DOCS) -> str:
    """Markdown tables of every built-in and every option, checked against the middleware pages."""
    out = [
        "| name | class | extra to install | backend package |",
        "|---|---|---|---|",
    ]
    for name, spec in config.BUILTINS.items():
        extra = f'`pip install "observed-batch[{spec.extra}]"`' if spec.extra else "none (in the core)"
        backend = f"`{spec.backend.split('.')[0]}`" if spec.backend else "none"
        out.append(f"| [`{name}`](../middleware/{name}.md) | `{spec.cls}` | {extra} | {backend} |")
    for name in config.BUILTINS:
        out += _middleware_section(name, docs)
    return "\n".join(out) + "\n"


def alarms_reference(_: str | None = None, docs: Path = DOCS) -> str:
    """``<!-- generated: alarms -->``: one row per alarm of the pack, from ``observed_batch.alarms``."""
    from dataclasses import fields

    from observed_batch.alarms import ALARMS, Thresholds, render_alarms

    sample = render_alarms(
        function="FUNCTION", queue="QUEUE", dlq="DLQ", stream="STREAM", kafka_topic="TOPIC", timeout_s=30
    )
    descriptions = {
        r["Properties"]["AlarmName"].removeprefix("FUNCTION-batch-"): r["Properties"]["AlarmDescription"]
        for r in sample["Resources"].values()
    }
    defaults = {f.name: f.default for f in fields(Thresholds)}
    needs = {"function": "always", "backend": "always, one per backend", "timeout": "`--timeout-s`"}
    rows = [
        "| alarm `<function>-batch-…` | reads | applies | threshold (option, default) | TreatMissingData | to do |",
        "|---|---|---|---|---|---|",
    ]
    for spec in ALARMS:
        description = next(d for name, d in descriptions.items() if name.startswith(spec.suffix))
        todo = description.split("What to do: ", 1)[1]
        applies = needs.get(spec.requires, f"`--{spec.requires.replace('stream', 'stream` or `--table')}`")
        applies = applies.replace("`--kafka`", "`--kafka-topic`")
        option = f"`--{spec.threshold.replace('_', '-')}` {defaults[spec.threshold]}"
        missing = f"`{spec.treat_missing_data}`: {spec.missing_data_reason}"
        rows.append(f"| `{spec.suffix}` | {spec.watches} | {applies} | {option} | {missing} | {todo} |")
    return "\n".join(rows) + "\n"


_GENERATORS = {"options": options_reference, "options-table": options_table, "alarms": alarms_reference}


def render(markdown: str, docs: Path = DOCS) -> str:
    """Replace every ``<!-- generated: NAME -->`` marker with what its generator writes."""

    def replace(match: re.Match[str]) -> str:
        generator = _GENERATORS.get(match.group(1))
        if generator is None:
            raise DocsDrift(f"unknown generated section {match.group(1)!r}; known: {', '.join(_GENERATORS)}")
        return generator(match.group(2), docs)

    return _MARKER.sub(replace, markdown)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """mkdocs event: runs for every page after its markdown was read."""
    return render(markdown)
