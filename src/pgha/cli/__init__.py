"""The `pgha` command. The CLI holds no logic: it parses, calls one function, prints the result."""

from __future__ import annotations

import sys

import click

from pgha import __version__
from pgha.cli import deploy_cmds, doctor_cmds, drill_cmds, lab_cmds, ops_cmds, spec_cmds
from pgha.cli.common import cli
from pgha.cli.output import err, print_error
from pgha.errors import PghaError

# importing them registers their commands on `cli`
_COMMAND_MODULES = (spec_cmds, lab_cmds, ops_cmds, drill_cmds, doctor_cmds, deploy_cmds)

__all__ = ["cli", "main", "__version__"]


def main(argv: list[str] | None = None) -> int:
    """Entry point: user mistakes become a message and an exit code, never a traceback."""
    try:
        cli.main(args=argv, prog_name="pgha", standalone_mode=False)
    except PghaError as exc:
        print_error(exc)
        return exc.exit_code
    except click.exceptions.Abort:
        err.print("aborted")
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
