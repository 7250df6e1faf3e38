"""The CLI starts without the heavy libraries: every `pgha` call pays for what it imports at start-up.

Each check runs in a fresh interpreter (this test session has imported everything already).
bench/cli_start.py measures the time.
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("rich", "pydantic", "cryptography", "httpx", "psycopg", "matplotlib", "asyncssh", "yaml", "jinja2")


def imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.split()) & set(HEAVY)


def test_import_pgha_cli_imports_nothing_heavy() -> None:
    assert imported_after("import pgha.cli") == set()


def test_version_and_help_import_nothing_heavy() -> None:
    for argv in (["--version"], ["--help"], ["lab", "--help"], ["lab"]):
        run = f"import contextlib, io, pgha.cli\nwith contextlib.redirect_stdout(io.StringIO()), " \
              f"contextlib.redirect_stderr(io.StringIO()):\n    pgha.cli.main({argv!r})"
        assert imported_after(run) == set(), argv


def test_a_command_still_gets_what_it_needs() -> None:
    """The check above can fail: running a command does import its libraries."""
    run = "import contextlib, io, pgha.cli\nwith contextlib.redirect_stderr(io.StringIO()):\n" \
          "    pgha.cli.main(['spec', 'check', '--spec', '/nonexistent.yml'])"
    assert {"pydantic", "yaml", "rich"} <= imported_after(run)
