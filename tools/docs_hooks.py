"""mkdocs hook: facts the code owns are written into the docs from the code, so they cannot drift.

A page containing ``<!-- generated: options -->`` gets the configuration reference: every built-in
middleware (from ``observed_batch.config.BUILTINS``), and for each, every constructor option with
its environment variable (``option_kinds`` decides which options the environment can set), type
and default read with ``inspect``. The meaning of each option is taken from the Options table of
the middleware's own page (``docs/middleware/<name>.md``), which stays the one place for prose.

The build fails (``DocsDrift``) when a middleware page's Options table lists an option the code
does not have, misses one it has, names another environment variable, or states another default.
``tests/test_docs_site.py`` runs the same checks, so ``pytest`` catches drift without mkdocs.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from observed_batch import config

__all__ = [
    "DocsDrift",
    "OptionRow",
    "alarms_reference",
    "on_page_markdown",
    "options_reference",
    "page_options",
    "render",
]

DOCS = Path(__file__).resolve().parent.parent / "docs"
_MARKER = re.compile(r"<!-- generated: ([\w-]+) -->")
_CELL = re.compile(r"(?:`[^`]*`|[^|`])+")
_CODE_ONLY = "code only"


class DocsDrift(Exception):
    """A page states something about the configuration that the code does not."""


@dataclass(frozen=True)
class OptionRow:
    """One row of a middleware page's Options table."""

    option: str
    env_var: str
    default: str
    meaning: str


def page_options(markdown: str) -> dict[str, OptionRow]:
    """The rows of the table under the page's ``## Options`` heading, by option name."""
    section = re.search(r"^## Options\n(.*?)(?=^## |\Z)", markdown, re.DOTALL | re.MULTILINE)
    if section is None:
        return {}
    rows: dict[str, OptionRow] = {}
    for line in section.group(1).splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in _CELL.findall(line.strip().strip("|"))]
        option, env_var, default, meaning = cells[0].strip("`"), cells[1].strip("`"), cells[2], cells[3]
        rows[option] = OptionRow(option, env_var, default, meaning)
    return rows


def _env_var(name: str, option: str, kinds: dict[str, Any]) -> str:
    return f"OBSERVED_BATCH_{name.upper()}_{option.upper()}" if option in kinds else _CODE_ONLY


def _type(kind: Any, annotation: Any) -> str:
    if isinstance(kind, tuple):
        return "one of " + ", ".join(f"`{value}`" for value in kind)
    if kind is not None:
        return f"`{kind.__name__}`"
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    # A table cell cannot hold "|"; the None default is in the default column anyway.
    return f"`{text.replace(' | None', '')}`"


def _stated_default(text: str) -> object:
    """A page's default cell as a Python value, when it is a single literal; else the text itself."""
    literal = text.strip()
    if not (literal.startswith("`") and literal.endswith("`") and literal.count("`") == 2):
        return text
    value = literal.strip("`")
    for parse in (int, float):
        try:
            return parse(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value, value)


def _check(name: str, parameter: inspect.Parameter, env_var: str, row: OptionRow | None) -> None:
    where = f"docs/middleware/{name}.md, option {parameter.name!r}"
    if row is None:
        raise DocsDrift(f"{where}: missing from the Options table")
    if row.env_var != env_var:
        raise DocsDrift(f"{where}: env var {row.env_var!r}, the code reads {env_var!r}")
    default = parameter.default
    if isinstance(default, (bool, int, float, str)) and default != "":
        stated = _stated_default(row.default)
        if stated != default or isinstance(stated, bool) != isinstance(default, bool):
            raise DocsDrift(f"{where}: default {row.default}, the code says {default!r}")


def _middleware_section(name: str, docs: Path) -> list[str]:
    cls = config.builtin_class(name)
    kinds = config.option_kinds(cls)
    rows = page_options((docs / "middleware" / f"{name}.md").read_text())
    parameters = [p for p in inspect.signature(cls).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(rows) - {p.name for p in parameters})
    if unknown:
        raise DocsDrift(f"docs/middleware/{name}.md documents options the code does not have: {', '.join(unknown)}")
    out = [
        "",
        f"## `{name}`",
        "",
        f"`observed_batch.middleware.{cls.__name__}`: details on the [{name} page](../middleware/{name}.md#options).",
        "",
        "| option | environment variable | type | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for parameter in parameters:
        env_var = _env_var(name, parameter.name, kinds)
        row = rows.get(parameter.name)
        _check(name, parameter, env_var, row)
        assert row is not None  # _check raised otherwise
        default = parameter.default
        if isinstance(default, bool):
            default_cell = f"`{str(default).lower()}`"
        elif default is None or default == "":
            default_cell = row.default  # resolved at construction (env fallbacks): the page says how
        else:
            default_cell = f"`{default}`"
        env_cell = f"`{env_var}`" if env_var != _CODE_ONLY else _CODE_ONLY
        meaning = row.meaning.replace("](#", f"](../middleware/{name}.md#")
        out.append(
            f"| `{parameter.name}` | {env_cell} | {_type(kinds.get(parameter.name), parameter.annotation)} "
            f"| {default_cell} | {meaning} |"
        )
    return out


def options_reference(docs: Path = DOCS) -> str:
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


def alarms_reference(docs: Path = DOCS) -> str:
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


_GENERATORS = {"options": options_reference, "alarms": alarms_reference}


def render(markdown: str, docs: Path = DOCS) -> str:
    """Replace every ``<!-- generated: NAME -->`` marker with what its generator writes."""

    def replace(match: re.Match[str]) -> str:
        generator = _GENERATORS.get(match.group(1))
        if generator is None:
            raise DocsDrift(f"unknown generated section {match.group(1)!r}; known: {', '.join(_GENERATORS)}")
        return generator(docs)

    return _MARKER.sub(replace, markdown)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """mkdocs event: runs for every page after its markdown was read."""
    return render(markdown)
