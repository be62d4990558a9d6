"""A module whose own import fails: config must not mistake it for an unreleased built-in."""

import no_such_dependency_for_tests  # noqa: F401
