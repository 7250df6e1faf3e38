"""Runs last: `lab down` removes every process, namespace, the bridge and the data."""

from __future__ import annotations

import subprocess

import pytest

from pgha.lab.control import Lab
from pgha.lab.network import existing_namespaces, ip, link_exists

pytestmark = pytest.mark.lab


def test_zz_down_leaves_nothing(lab: Lab) -> None:
    """Runs last in this module: down removes every process, namespace, the bridge and the data."""
    assert len([r for r in lab.processes() if r.pid]) >= 14  # 15 daemons; a postmaster may be restarting
    # Every process of the lab: all that live in its namespaces (daemons, postmasters, backends).
    pids = [int(p) for ns in existing_namespaces() if ns.startswith(lab.network.names.prefix)
            for p in ip("netns", "pids", ns).stdout.split()]
    pids.append(lab.transport.supervisor.pid() or 0)
    assert len(pids) > 15
    lab.down()
    assert not [ns for ns in existing_namespaces() if ns.startswith(lab.network.names.prefix)]
    assert not link_exists(lab.network.names.bridge)
    alive = [p for p in pids if subprocess.run(["kill", "-0", str(p)], capture_output=True).returncode == 0]
    # killed daemons may linger a moment as zombies of a non-init PID 1
    zombies = [p for p in alive if "Z" in subprocess.run(["ps", "-o", "stat=", "-p", str(p)],
                                                         capture_output=True, text=True).stdout]
    assert sorted(alive) == sorted(zombies)
    assert not lab.state.root.exists()
