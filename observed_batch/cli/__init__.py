"""``observed-batch`` command line: invoke, sample-event, dashboard, alarms, doctor.

Subcommands load lazily (each lives in its own module and exposes a click command named
``command``), so ``observed-batch --help`` stays fast and one broken command cannot break others.
Exit codes: 0 success, 1 findings / handler failures, 2 usage errors.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

__all__ = ["main"]

#: command name -> module holding ``command``
COMMANDS = {
    "invoke": "observed_batch.cli.invoke",
    "sample-event": "observed_batch.cli.sample_event",
    "dashboard": "observed_batch.cli.dashboard",
    "alarms": "observed_batch.cli.alarms",
    "doctor": "observed_batch.cli.doctor",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if self.get_command(ctx, name) is not None)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMANDS.get(cmd_name)
        if module_name is None:
            return None
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None
            raise
        command: click.Command = module.command
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="observed-batch")
def main(**_: Any) -> None:
    """Observability for Powertools batch processing: run handlers locally, generate events and
    dashboards and the alarm pack, and check a deployed setup and its event sources for the classic pitfalls."""
