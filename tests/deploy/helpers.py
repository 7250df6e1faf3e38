"""Helpers of the deploy tests: the real CLI, spec variants, measured figures."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from pgha import spec as spec_mod

PGHA = str(Path(sys.executable).parent / "pgha")
FIGURES: dict[str, float] = {}
"""Timings measured by the tests, printed when the machines are torn down."""


def changed_spec(spec_file: Path, **parameters: object) -> Path:
    """A copy of the spec with extra PostgreSQL parameters (a config change)."""
    data = yaml.safe_load(spec_file.read_text())
    data["postgresql"]["parameters"].update(parameters)
    out = spec_file.with_name("cluster-changed.yml")
    out.write_text(spec_mod.dump(data))
    return out


def pgha(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The real CLI, as an operator runs it."""
    return subprocess.run([PGHA, *args], capture_output=True, text=True, timeout=timeout)


def assert_deploy_changes_nothing(spec_file: Path, figure: str) -> None:
    """Deploy again: it must report no changes and verify must pass; its time is recorded as ``figure``."""
    t0 = time.monotonic()
    res = pgha("deploy", "--spec", str(spec_file), "--format", "json")
    FIGURES[figure] = time.monotonic() - t0
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert not out["changed"], out["changes"]
    assert out["verify"]["passed"]
