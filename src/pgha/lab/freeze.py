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

from pgha.errors import UsageError
from pgha.lab.control import Lab


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


@contextmanager
def frozen(lab: Lab, node_name: str) -> Iterator[list[int]]:
    """Stop the node's Patroni and PostgreSQL processes for the block; always resumed (SIGCONT)."""
    node = lab.spec.node(node_name)
    patroni = lab.transport.service_state(node, "patroni").pid
    postmaster = lab.postmaster_pid(node)
    if not (patroni and postmaster):
        raise UsageError(f"{node.name}: Patroni (pid {patroni}) or PostgreSQL (pid {postmaster}) is not running: "
                         "nothing to freeze")
    pids = _tree(patroni) + _tree(postmaster)
    stopped = []
    try:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
            except ProcessLookupError:
                pass
        yield stopped
    finally:
        for pid in stopped:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
