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
