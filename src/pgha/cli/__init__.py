"""The `pgha` command. The CLI holds no logic: it parses, calls one function, prints the result.

One error path: whatever ends a command — a PghaError, click's own usage errors, an interrupt, an OS
error, a bug — comes out as one ``pgha: error:`` line (and a hint) with an exit code from the README's
table, never a traceback (``PGHA_DEBUG=1`` shows the traceback of an unexpected one).
"""

from __future__ import annotations

import os
import sys

import click

from pgha import __version__
from pgha.cli import (
    backup_cmds,
    deploy_cmds,
    doctor_cmds,
    drill_cmds,
    lab_cmds,
    lifecycle_cmds,
    ops_cmds,
    spec_cmds,
)
from pgha.cli.common import cli
from pgha.cli.output import print_error
from pgha.errors import Interrupted, PghaError, UsageError, pgha_command, use_spec_file

# importing them registers their commands on `cli`
_COMMAND_MODULES = (spec_cmds, lab_cmds, ops_cmds, drill_cmds, doctor_cmds, deploy_cmds, lifecycle_cmds, backup_cmds)

__all__ = ["cli", "main", "__version__"]


def main(argv: list[str] | None = None) -> int:
    """Entry point: user mistakes become a message and an exit code, never a traceback."""
    try:
        return _run(argv)
    finally:
        use_spec_file(None)  # hints name the spec of this call only (main may run again in this process)


def _run(argv: list[str] | None) -> int:
    use_spec_file(None)  # until the command loads its spec
    try:
        cli.main(args=argv, prog_name="pgha", standalone_mode=False)
    except PghaError as exc:
        print_error(exc)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):  # click turns ^C into Abort
        print_error(Interrupted("interrupted"))
        return Interrupted.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:  # `pgha`, `pgha lab`: the help asked for
        click.echo(exc.ctx.get_help() if exc.ctx else exc.format_message())
        return 0
    except click.ClickException as exc:  # click's own usage errors: unknown option, bad value, ...
        where = exc.ctx.command_path if isinstance(exc, click.UsageError) and exc.ctx else "pgha"
        print_error(UsageError(exc.format_message().rstrip("."), hint=f"see `{where} --help`"))
        return exc.exit_code
    except OSError as exc:
        print_error(PghaError(f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}"))
        return 1
    except Exception as exc:
        if os.environ.get("PGHA_DEBUG"):
            raise
        unreachable = _stack_error(exc)
        if unreachable:
            print_error(unreachable)
            return unreachable.exit_code
        # a bug in pgha: still one line, the traceback on request
        print_error(PghaError(f"internal error: {type(exc).__name__}: {exc}",
                              hint="this is a bug in pgha; PGHA_DEBUG=1 shows the traceback"))
        return 1
    return 0


def _stack_error(exc: Exception) -> PghaError | None:
    """An HTTP or PostgreSQL client error no command turned into a PghaError: the stack did not answer.

    Looked up in sys.modules: if httpx or psycopg was never imported, the error cannot be theirs (and
    start-up never pays for importing them)."""
    httpx, psycopg = sys.modules.get("httpx"), sys.modules.get("psycopg")
    if httpx is not None and isinstance(exc, httpx.HTTPError):
        try:
            where = f"{exc.request.url}: "
        except RuntimeError:  # no request attached
            where = ""
        return PghaError(f"{where}{type(exc).__name__}: {exc}".rstrip(": "),
                         hint=f"is the cluster running? see `{pgha_command('status')}`")
    if psycopg is not None and isinstance(exc, psycopg.Error):
        return PghaError(f"PostgreSQL: {' '.join(str(exc).split())}",
                         hint=f"is the cluster running? see `{pgha_command('status')}`")
    return None


if __name__ == "__main__":
    sys.exit(main())
