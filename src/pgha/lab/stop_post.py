"""The lab's ExecStopPost: a supervisord event listener that runs a service's stop-post commands
whenever its program ends (exited, stopped, fatal), as systemd runs ExecStopPost on a server.

Run by supervisord as ``python -m pgha.lab.stop_post COMMANDS.json``; the JSON maps a program name to
its argv lists, already wrapped in ``ip netns exec``. It speaks supervisord's event listener protocol
on stdin/stdout and logs to stderr.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TextIO

ENDED = ("PROCESS_STATE_EXITED", "PROCESS_STATE_STOPPED", "PROCESS_STATE_FATAL")


def parse_tokens(line: str) -> dict[str, str]:
    return dict(token.split(":", 1) for token in line.split())


def run_commands(commands: list[list[str]], log: TextIO) -> None:
    for argv in commands:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        log.write(f"stop-post: {' '.join(argv)} -> {proc.returncode} {proc.stderr.strip()}\n")
        log.flush()


def serve(table: dict[str, list[list[str]]], stdin: TextIO, stdout: TextIO, log: TextIO) -> None:
    while True:
        stdout.write("READY\n")
        stdout.flush()
        line = stdin.readline()
        if not line:
            return
        header = parse_tokens(line)
        payload = parse_tokens(stdin.read(int(header["len"])))
        commands = table.get(payload.get("processname", ""))
        if header.get("eventname") in ENDED and commands:
            try:
                run_commands(commands, log)
            except (OSError, subprocess.SubprocessError) as exc:  # never let the listener die
                log.write(f"stop-post: {exc}\n")
        stdout.write("RESULT 2\nOK")
        stdout.flush()


def main() -> None:
    with open(sys.argv[1]) as f:
        table = json.load(f)
    serve(table, sys.stdin, sys.stdout, sys.stderr)


if __name__ == "__main__":
    main()
