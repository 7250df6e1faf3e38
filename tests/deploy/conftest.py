"""Six real Debian 12 machines (systemd-nspawn) for the deploy tests, torn down after them even on failure
(before the lab tests start, so the two never share the CPU)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgha import spec as spec_mod
from tests.deploy.helpers import FIGURES
from tests.deploy.nspawn import SIX, WORK, Machines, spec_data


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the deploy tests boot machines: root needed"
    for tool in ("systemd-nspawn", "debootstrap"):
        if shutil.which(tool) is None:
            return f"{tool} missing (scripts/bootstrap.sh installs it)"
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    if "pgha-pgha-bench-" in out and not os.environ.get("CI"):
        return "benchmarks are running on this machine (pgha-bench namespaces): not booting six machines now"
    return None


@pytest.fixture(scope="package", autouse=True)
def state_root() -> Iterator[Path]:
    """The machines' state directories live under WORK: it is their state root (spec and pgha subprocesses)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(spec_mod, "STATE_ROOT", WORK)
        mp.setenv("PGHA_STATE_ROOT", str(WORK))
        yield WORK


@pytest.fixture(scope="package")
def machines() -> Iterator[Machines]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    ms = Machines(SIX)
    try:
        ms.up()
        yield ms
    finally:
        done = ms.teardown()
        left = ms.leftovers()
        print(f"\nnspawn teardown: {len(done)} steps; left behind: {left or 'nothing'}", file=sys.stderr)
        if FIGURES:
            print("deploy figures: " + ", ".join(f"{k} {v:.1f} s" for k, v in FIGURES.items()), file=sys.stderr)


@pytest.fixture(scope="package")
def spec_file(machines: Machines, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cluster spec of the six machines (pinned host keys, offline bundle, watchdog off)."""
    path = tmp_path_factory.mktemp("deploy") / "cluster.yml"
    path.write_text(spec_mod.dump(spec_data(machines)))
    return path
