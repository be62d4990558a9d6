"""The docs site states what the code does: generated references, tables that name the built-ins,
a nav of existing pages, and a Quick start that CI can find and run line by line."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from observed_batch import Middleware, config
from observed_batch.options import Option, Options, declared

REPO = Path(__file__).resolve().parent.parent


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


hooks = _load("docs_hooks", REPO / "tools" / "docs_hooks.py")
quickstart = _load("quickstart", REPO / ".ci" / "quickstart.py")


@pytest.fixture
def docs_copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    return tmp_path / "docs"


def _edit(page: Path, old: str, new: str) -> None:
    text = page.read_text()
    assert old in text
    page.write_text(text.replace(old, new))


# -- configuration reference ----------------------------------------------------------------------------
def test_reference_lists_every_declared_option_of_every_builtin_with_its_env_var() -> None:
    # GIVEN the built-ins and the options they declare
    # WHEN the reference is generated
    reference = hooks.options_reference()
    # THEN every option appears, with its environment variable when the environment can set it
    for name in config.BUILTINS:
        options = declared(config.builtin_class(name))
        assert f"## `{name}`" in reference
        for option in options.values():
            assert f"| `{option.name}` |" in reference
            if option.settable:
                assert f"`{option.variable(name)}`" in reference


def test_reference_takes_type_bounds_and_defaults_from_the_declaration() -> None:
    # GIVEN tracing's declaration of max_response_bytes (an int of at least 64, default 1024)
    # WHEN the reference is generated THEN that row shows it
    row = next(line for line in hooks.options_reference().splitlines() if line.startswith("| `max_response_bytes"))
    assert "| `int`, ≥ 64 | `1024` |" in row


def test_a_middleware_page_gets_its_options_table_from_the_declaration() -> None:
    # GIVEN the timeout_guard page, whose Options section holds the marker
    page = (REPO / "docs" / "middleware" / "timeout_guard.md").read_text()
    # WHEN rendered THEN the marker is replaced by one row per declared option, booleans as in TOML
    rendered = hooks.render(page)
    assert "<!-- generated" not in rendered
    assert "| `estimate` | `OBSERVED_BATCH_TIMEOUT_GUARD_ESTIMATE` | `bool` | `true` |" in rendered
    assert "| `clock` | code only | a callable returning seconds |" in rendered


def test_an_options_table_for_a_name_that_is_no_builtin_fails_the_build() -> None:
    with pytest.raises(hooks.DocsDrift, match="options-table needs the name of a built-in"):
        hooks.render("<!-- generated: options-table tracer -->")


def test_a_page_that_does_not_generate_its_options_table_fails_the_build(docs_copy: Path) -> None:
    # GIVEN a tracing page whose Options section lost its marker
    _edit(docs_copy / "middleware" / "tracing.md", "<!-- generated: options-table tracing -->", "")
    # WHEN the reference is generated THEN the build fails naming the page
    with pytest.raises(hooks.DocsDrift, match=r"tracing\.md: its Options section must generate the table"):
        hooks.options_reference(docs=docs_copy)


def test_a_page_with_hand_written_option_rows_fails_the_build(docs_copy: Path) -> None:
    # GIVEN a metrics page that adds a row of its own to the generated table
    marker = "<!-- generated: options-table metrics -->"
    _edit(docs_copy / "middleware" / "metrics.md", marker, marker + "\n| `resolution` | code only | `60` | none |")
    # WHEN / THEN
    with pytest.raises(hooks.DocsDrift, match="hand-written option rows"):
        hooks.options_reference(docs=docs_copy)


class _Declared(Middleware):
    name = "declared"
    OPTIONS = Options(Option("size", int, 10, "Size."), Option("mode", ("a", "b"), "a", "Mode."))

    def __init__(self, *, size: int = 10, mode: str = "a", extra: int = 0) -> None:
        self.size, self.mode, self.extra = size, mode, extra


class _OtherDefault(Middleware):
    name = "other_default"
    OPTIONS = Options(Option("size", int, 10, "Size."))

    def __init__(self, *, size: int = 20) -> None:
        self.size = size


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (_Declared, "does not declare the constructor's option 'extra'"),
        (_OtherDefault, "'size' defaults to 10, the constructor to 20"),
    ],
)
def test_a_declaration_that_disagrees_with_its_constructor_fails_the_build(cls: type, message: str) -> None:
    with pytest.raises(hooks.DocsDrift, match=message):
        hooks.check_declaration(cls.__name__, cls)


def test_page_links_in_copied_meanings_point_back_to_the_middleware_page() -> None:
    # GIVEN tracing's mode meaning, which links to #batch-mode on its own page
    # WHEN it is copied into the reference THEN the link names that page
    assert "](../middleware/tracing.md#batch-mode)" in hooks.options_reference()


def test_markers_are_replaced_and_unknown_ones_refused() -> None:
    # GIVEN a page with the options marker WHEN rendered THEN the marker is gone and the tables are in
    rendered = hooks.on_page_markdown("# Reference\n\n<!-- generated: options -->\n", page=None)
    assert "<!-- generated" not in rendered
    assert "| `max_response_bytes` |" in rendered
    # GIVEN a marker nobody generates WHEN rendered THEN the build fails naming it
    with pytest.raises(hooks.DocsDrift, match="unknown generated section 'colours'"):
        hooks.render("<!-- generated: colours -->")


def test_chain_settings_in_the_reference_are_the_variables_config_reads() -> None:
    # GIVEN the reference page's hand-written table of chain settings
    text = (REPO / "docs" / "reference" / "configuration.md").read_text()
    # WHEN / THEN it names exactly the variables config.py reads
    named = set(re.findall(r"^\| `(OBSERVED_BATCH_\w+)` \|", text, re.MULTILINE))
    assert named == {config.ENV_MIDDLEWARE, config.ENV_DISABLED, config.ENV_PYPROJECT}


# -- tables naming the built-ins ------------------------------------------------------------------------
@pytest.mark.parametrize("page", ["README.md", "docs/middleware/index.md"])
def test_middleware_table_names_every_builtin_in_order_with_its_extra(page: str) -> None:
    # GIVEN the page's middleware table (rows start with a linked built-in name)
    row = re.compile(r"^\| \[`(\w+)`\]\([^)]*\) \| [^\n]*? \| (`\w+`|none) \| [^\n]*\|$", re.MULTILINE)
    rows = row.findall((REPO / page).read_text())
    # WHEN / THEN the names are the built-ins in their recommended order, each with the extra it needs
    assert [name for name, _ in rows] == list(config.BUILTINS)
    for name, extra in rows:
        assert extra.strip("`") == (config.BUILTINS[name].extra or "none")


def test_middleware_pages_exist_for_every_builtin() -> None:
    # GIVEN / WHEN / THEN each built-in has its page
    for name in config.BUILTINS:
        assert (REPO / "docs" / "middleware" / f"{name}.md").is_file()


# -- nav ------------------------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """mkdocs.yml names a Python function with !!python/name; the test only needs the nav."""


_Loader.add_multi_constructor("tag:yaml.org,2002:python/name:", lambda loader, suffix, node: suffix)


def _nav_files(entries: Any) -> list[str]:
    files: list[str] = []
    for entry in entries:
        for value in entry.values():
            files += _nav_files(value) if isinstance(value, list) else [value]
    return files


def test_nav_lists_each_existing_page_once_and_every_page() -> None:
    # GIVEN mkdocs.yml's nav and the pages under docs/
    site = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=_Loader)
    listed = _nav_files(site["nav"])
    pages = sorted(str(path.relative_to(REPO / "docs")) for path in (REPO / "docs").rglob("*.md"))
    # WHEN / THEN no placeholder entries, no duplicates, no orphan pages
    assert sorted(listed) == pages
    assert len(set(listed)) == len(listed)


# -- the Quick start ------------------------------------------------------------------------------------
def test_readme_quick_start_is_one_venv_line_one_run_line_one_test_line() -> None:
    # GIVEN the README WHEN its marked Quick start is extracted
    commands = quickstart.extract((REPO / "README.md").read_text())
    # THEN a newcomer creates a venv, installs and runs the example, then installs and runs the tests
    assert len(commands) == 3
    assert commands[0].startswith("python3 -m venv ")
    assert '".[examples]"' in commands[1]
    assert "observed-batch invoke examples." in commands[1]
    assert "dev]" in commands[2]
    assert "pytest" in commands[2]


def test_examples_extra_brings_what_every_example_imports() -> None:
    # GIVEN the examples' requirements and the pyproject extras
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    # WHEN / THEN everything an example requires is in the 'examples' extra (directly or via 'all')
    for requirements in (REPO / "examples").glob("*/requirements.txt"):
        for requirement in filter(None, requirements.read_text().splitlines()):
            assert requirement in extras["examples"], requirement


@pytest.mark.parametrize(
    ("readme", "problem"),
    [
        ("no marker\n", "exactly once, found 0"),
        ("<!-- quickstart -->\n<!-- quickstart -->\n", "exactly once, found 2"),
        ("<!-- quickstart -->\n```sh\ntrue\n```\n", "followed directly by a ```bash block"),
        ("<!-- quickstart -->\n```bash\n# only a comment\n```\n", "has no commands"),
    ],
)
def test_a_readme_without_one_marked_block_is_refused(readme: str, problem: str) -> None:
    # GIVEN / WHEN / THEN
    with pytest.raises(quickstart.QuickstartError, match=re.escape(problem)):
        quickstart.extract(readme)


def test_continuation_lines_are_joined() -> None:
    # GIVEN a block with a continued command WHEN extracted THEN one command
    assert quickstart.extract("<!-- quickstart -->\n```bash\necho a \\\n  b\n\necho c\n```\n") == [
        "echo a    b",
        "echo c",
    ]


def test_a_failing_first_command_of_an_and_list_stops_the_quick_start(tmp_path: Path) -> None:
    # GIVEN lines where the second fails before its '&&' (which `set -e` would not catch)
    script = quickstart.script(["echo one > first", "false && echo skipped", "echo three > third"])
    # WHEN they run
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    # THEN the run stops there with that status and says which line failed
    assert result.returncode == 1
    assert "line 2 failed" in result.stderr
    assert (tmp_path / "first").exists()
    assert not (tmp_path / "third").exists()


def test_the_clean_copy_holds_tracked_and_new_files_but_not_ignored_or_deleted_ones(tmp_path: Path) -> None:
    # GIVEN a repository with a tracked file, a tracked file deleted since, a new file and an ignored one
    source, target = tmp_path / "source", tmp_path / "target"
    (source / "pkg").mkdir(parents=True)
    target.mkdir()
    for name in ("pkg/kept.py", "gone.txt", ".gitignore"):
        (source / name).write_text("out/\n" if name == ".gitignore" else name)
    subprocess.run(["git", "init", "-q"], cwd=source, check=True)
    subprocess.run(["git", "add", "."], cwd=source, check=True)
    (source / "gone.txt").unlink()
    (source / "new.md").write_text("new")
    (source / "out").mkdir()
    (source / "out" / "clicks.json").write_text("{}")
    # WHEN the tree is copied
    quickstart.copy_tree(source, target)
    # THEN
    copied = sorted(str(path.relative_to(target)) for path in target.rglob("*") if path.is_file())
    assert copied == [".gitignore", "new.md", "pkg/kept.py"]


def test_outside_a_git_checkout_the_copy_leaves_out_venvs_and_caches(tmp_path: Path) -> None:
    # GIVEN an unpacked tree (no .git) with a virtualenv, a cache and generated output next to the code
    source, target = tmp_path / "source", tmp_path / "target"
    for name in ("pkg/code.py", ".venv/bin/python", "pkg/__pycache__/code.pyc", "out/clicks.json", "README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(name)
    # WHEN the tree is copied
    quickstart.copy_tree(source, target)
    # THEN only what a clone would hold arrives
    copied = sorted(str(path.relative_to(target)) for path in target.rglob("*") if path.is_file())
    assert copied == ["README.md", "pkg/code.py"]


def test_the_quick_start_runs_without_the_callers_virtualenv(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a caller inside a virtualenv
    monkeypatch.setenv("VIRTUAL_ENV", "/somewhere/venv")
    monkeypatch.setenv("PATH", "/somewhere/venv/bin:/usr/bin")
    monkeypatch.setenv("PYTHONPATH", "/somewhere/src")
    # WHEN the Quick start's environment is built THEN the venv and PYTHONPATH are gone
    environ = quickstart.clean_environment()
    assert "VIRTUAL_ENV" not in environ
    assert "PYTHONPATH" not in environ
    assert environ["PATH"] == "/usr/bin"


def test_run_executes_the_marked_block_in_a_copy_of_the_tree(tmp_path: Path) -> None:
    # GIVEN a repository whose README's Quick start writes a file next to the README it sees
    (tmp_path / "README.md").write_text("<!-- quickstart -->\n```bash\ntest -f README.md && touch ran\n```\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    # WHEN it runs THEN it succeeds in the copy and leaves the original tree untouched
    assert quickstart.run(tmp_path / "README.md") == 0
    assert not (tmp_path / "ran").exists()
