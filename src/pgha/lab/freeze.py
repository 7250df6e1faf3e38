"""A hung node: its Patroni and its postmaster's whole process tree stopped (SIGSTOP), resumed after.

The pids come from this lab's own supervisor and data directory, never from a pattern: several labs
on one machine share node names. Patroni detaches the postmaster (its parent is init), so both trees
are stopped: the kernel still accepts TCP on the node's ports, nothing answers.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

from pgha.errors import UsageError
from pgha.spec import Node

if TYPE_CHECKING:
    from pgha.lab.control import Lab
    from pgha.lab.transport import NetnsTransport


def _tree(root: int) -> list[int]:
    """The pid and every descendant (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def postmaster_pid(pg_data: str) -> int | None:
    """The running postmaster's pid from its data directory (this machine), None if not running."""
    try:
        pid = int((Path(pg_data) / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


def stop_trees(*roots: int) -> list[int]:
    """SIGSTOP each root process and all its descendants; the pids stopped."""
    stopped = []
    for pid in [p for root in roots for p in _tree(root)]:
        try:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        except ProcessLookupError:
            pass
    return stopped


def resume(pids: list[int]) -> None:
    """SIGCONT each pid still there."""
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def freeze_node(transport: NetnsTransport, node: Node, pg_data: str) -> list[int]:
    """Stop the node's Patroni and PostgreSQL process trees; the pids to :func:`resume`."""
    patroni = transport.service_state(node, "patroni").pid
    postmaster = postmaster_pid(pg_data)
    if not (patroni and postmaster):
        raise UsageError(f"{node.name}: Patroni (pid {patroni}) or PostgreSQL (pid {postmaster}) is not running: "
                         "nothing to freeze")
    return stop_trees(patroni, postmaster)


@contextmanager
def frozen(lab: Lab, node_name: str) -> Iterator[list[int]]:
    """Stop the node's Patroni and PostgreSQL processes for the block; always resumed (SIGCONT)."""
    node = lab.spec.node(node_name)
    stopped = lab.transport.freeze(node, lab.target.layout(node).pg_data)
    try:
        yield stopped
    finally:
        resume(stopped)
