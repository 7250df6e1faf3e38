"""Runs last: `lab down` removes every process, namespace, the bridge and the data."""

from __future__ import annotations

import subprocess

import pytest

from pgha.lab.control import Lab
from pgha.lab.network import existing_namespaces, link_exists

pytestmark = pytest.mark.lab


def test_zz_down_leaves_nothing(lab: Lab) -> None:
    """Runs last in this module: down removes every process, namespace, the bridge and the data."""
    pids = [r.pid for r in lab.processes() if r.pid]
    assert len(pids) == 15
    lab.down()
    assert not [ns for ns in existing_namespaces() if ns.startswith(lab.network.names.prefix)]
    assert not link_exists(lab.network.names.bridge)
    alive = [p for p in pids if subprocess.run(["kill", "-0", str(p)], capture_output=True).returncode == 0]
    # killed daemons may linger a moment as zombies of a non-init PID 1
    zombies = [p for p in alive if "Z" in subprocess.run(["ps", "-o", "stat=", "-p", str(p)],
                                                         capture_output=True, text=True).stdout]
    assert sorted(alive) == sorted(zombies)
    assert not lab.state.root.exists()
