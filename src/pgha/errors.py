"""The one error type pgha raises for anything a user can fix.

    PghaError            (exit 1) a step failed: what, why, what to do
    ├── SpecError        (exit 2) cluster.yml is unreadable or invalid: file, field, problem
    ├── UsageError       (exit 2) a command was called wrongly (unknown node, missing lab)
    ├── MissingPrerequisite (exit 4) this machine lacks something: a package, root, namespaces
    ├── CheckFailed      (exit 3) verify/doctor found problems (the report was already printed)
    └── Interrupted      (exit 130) ^C, or a question answered "no"

The CLI turns any of them into a message and an exit code, never a traceback.
"""

from __future__ import annotations

import shlex

_spec_file: str | None = None


def use_spec_file(path: str | None) -> None:
    """The spec file this run reads, set by the CLI; None for ./cluster.yml or the built-in lab spec."""
    global _spec_file
    _spec_file = path


def pgha_command(*words: str) -> str:
    """A pgha command line as hints and fixes print it: with ``--spec FILE`` when this run's spec is not
    the default one, so the command can be copied as it is."""
    spec = ["--spec", shlex.quote(_spec_file)] if _spec_file else []
    return " ".join(["pgha", *words, *spec])


class PghaError(Exception):
    """A failure with a message meant for a person and an exit code for a script."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, details: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def __str__(self) -> str:
        return self.message


class SpecError(PghaError):
    """cluster.yml cannot be read or breaks a rule; the message names the file and the field."""

    exit_code = 2

    def __init__(self, source: str, field: str | None, problem: str, *, hint: str | None = None) -> None:
        where = f"{source}: {field}: " if field else f"{source}: "
        super().__init__(where + problem, hint=hint)
        self.source = source
        self.field = field
        self.problem = problem


class UsageError(PghaError):
    """The command was called in a way that cannot work (unknown node, no lab running...)."""

    exit_code = 2


class MissingPrerequisite(PghaError):
    """The machine lacks a package, root rights or kernel support that the command needs."""

    exit_code = 4


class CheckFailed(PghaError):
    """A verification found problems; the report has already been printed."""

    exit_code = 3


class Interrupted(PghaError):
    """The user stopped the command: ^C, or "no" to a confirmation."""

    exit_code = 130


class StepFailed(PghaError):
    """An orchestration step did not reach its goal in time."""

    exit_code = 1

    def __init__(
        self, step: str, problem: str, *, hint: str | None = None, logs: str | None = None
    ) -> None:
        super().__init__(f"step '{step}' failed: {problem}", hint=hint, details=logs)
        self.step = step
