"""Run the README's Quick start verbatim, as a newcomer would: in a clean copy of the tree.

The Quick start is the ```bash block right after the ``<!-- quickstart -->`` marker in README.md.
Its lines run unchanged, one after another, in one bash process (so ``. .venv/bin/activate``
carries over), in a temporary copy of the files git tracks (plus new files not ignored yet),
without the caller's virtualenv. Each line's exit status is checked, including the first command
of an ``a && b`` line, which ``set -e`` would let pass. Standard library only: CI runs this before
anything is installed.

    python3 .ci/quickstart.py [README.md]      # exit status: that of the first failing line
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MARKER = "<!-- quickstart -->"
_BLOCK = re.compile(re.escape(MARKER) + r"\s*\n```bash\n(.*?)\n```", re.DOTALL)


class QuickstartError(Exception):
    """README.md has no (or more than one) marked Quick start block."""


def extract(readme: str) -> list[str]:
    """The Quick start's command lines (backslash continuations joined, blank lines dropped)."""
    if readme.count(MARKER) != 1:
        raise QuickstartError(f"README.md must contain {MARKER} exactly once, found {readme.count(MARKER)}")
    match = _BLOCK.search(readme)
    if match is None:
        raise QuickstartError(f"{MARKER} must be followed directly by a ```bash block")
    commands: list[str] = []
    pending = ""
    for line in match.group(1).splitlines():
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        command = (pending + line).strip()
        pending = ""
        if command and not command.startswith("#"):
            commands.append(command)
    if not commands:
        raise QuickstartError("the Quick start block has no commands")
    return commands


def script(commands: list[str]) -> str:
    """A bash script running each command unchanged and stopping at the first that fails."""
    lines = []
    for number, command in enumerate(commands, 1):
        lines += [
            f"printf '\\n$ %s\\n' {shlex.quote(command)}",
            command,
            f"status=$?; if [ $status -ne 0 ]; then echo 'quickstart: line {number} failed "
            f"with exit status '$status >&2; exit $status; fi",
        ]
    return "\n".join(lines) + "\n"


_NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git", ".venv", ".ci-venv", "venv*", "*.egg-info", "__pycache__", ".*_cache", "site", "out"
)


def copy_tree(source: Path, target: Path) -> None:
    """Copy what a fresh clone would have: tracked files (as in the work tree) and new unignored ones.

    Outside a git checkout (an unpacked sdist or tarball), copy everything but virtualenvs,
    caches and build output.
    """
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=source,
            check=True,
            capture_output=True,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(source, target, ignore=_NOT_IN_A_CLONE, dirs_exist_ok=True)
        return
    for name in filter(None, listed.split("\0")):
        path = source / name
        if path.is_file():  # a tracked file deleted in the work tree is not copied
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / name)


def clean_environment() -> dict[str, str]:
    """The caller's environment without its virtualenv: the Quick start makes its own."""
    environ = dict(os.environ)
    venv = environ.pop("VIRTUAL_ENV", None)
    if venv:
        environ["PATH"] = os.pathsep.join(
            entry for entry in environ.get("PATH", "").split(os.pathsep) if not entry.startswith(venv)
        )
    for variable in ("PYTHONPATH", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV"):
        environ.pop(variable, None)
    return environ


def run(readme: Path) -> int:
    commands = extract(readme.read_text())
    with tempfile.TemporaryDirectory(prefix="quickstart-") as temporary:
        tree = Path(temporary) / "observed-batch"
        tree.mkdir()
        copy_tree(readme.resolve().parent, tree)
        print(f"quickstart: {len(commands)} lines from {readme} in {tree}", flush=True)
        return subprocess.run(["bash", "-c", script(commands)], cwd=tree, env=clean_environment()).returncode


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")))
