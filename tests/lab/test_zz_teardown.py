"""Runs last: `lab down` removes every process, namespace, the bridge and the data."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pgha.lab.control import Lab
from pgha.lab.network import existing_namespaces, ip, link_exists

pytestmark = pytest.mark.lab


def start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def test_zz_down_leaves_nothing(lab: Lab) -> None:
    """Runs last in this module: down removes every process, namespace, the bridge and the data."""
    assert len([r for r in lab.processes() if r.pid]) >= 14  # 15 daemons; a postmaster may be restarting
    # Every process of the lab: all that live in its namespaces (daemons, postmasters, backends).
    pids = [int(p) for ns in existing_namespaces() if ns.startswith(lab.network.names.prefix)
            for p in ip("netns", "pids", ns).stdout.split()]
    pids.append(lab.transport.supervisor.pid() or 0)
    assert len(pids) > 15
    started = {p: start_time(p) for p in pids}
    said = lab.down()
    assert not [ns for ns in existing_namespaces() if ns.startswith(lab.network.names.prefix)]
    assert not link_exists(lab.network.names.bridge)
    # The same process (pid and start time: pids are reused quickly on a busy machine) still there?
    alive = [p for p in pids if started[p] is not None and start_time(p) == started[p]]
    # killed daemons may linger a moment as zombies of a non-init PID 1
    zombies = [p for p in alive if "Z" in subprocess.run(["ps", "-o", "stat=", "-p", str(p)],
                                                         capture_output=True, text=True).stdout]
    seen = {p: subprocess.run(["ps", "-o", "stat=,wchan:20=,args=", "-p", str(p)], capture_output=True,
                              text=True).stdout.strip() for p in alive if p not in zombies}
    # A pid ps no longer shows was a zombie reaped between the two looks (a busy machine): gone, not a survivor.
    survivors = {p: what for p, what in seen.items() if what}
    assert not survivors, f"down left these running: {survivors}; down said: {said}"
    assert not lab.state.root.exists()
