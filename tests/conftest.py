"""Shared fixtures. Lab tests share one real lab per session (bringing one up costs ~15-20 s)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pgha import spec as spec_mod
from pgha.spec import ClusterSpec

LAB_NAME = os.environ.get("PGHA_TEST_LAB_NAME", "pgha-ci")
LAB_SUBNET = os.environ.get("PGHA_TEST_LAB_SUBNET")
"""Two test runs can share the machine with another name and subnet, e.g.
``PGHA_TEST_LAB_NAME=pgha-h1 PGHA_TEST_LAB_SUBNET=10.203.11.0/24`` (defaults: pgha-ci, 10.203.0.0/24)."""


def lab_spec() -> ClusterSpec:
    """The default lab topology under its own cluster name (its own namespaces and state dir)."""
    return spec_mod.parse(spec_mod.default_data(lab=True, name=LAB_NAME, subnet=LAB_SUBNET), "(test lab spec)")


@pytest.fixture(scope="session")
def lab() -> Iterator[object]:
    """A running lab, torn down at the end of the session even when tests fail."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    from pgha.lab.control import Lab

    the_lab = Lab(lab_spec())
    the_lab.down()
    # Leave a half-built lab behind (namespaces, bridge, a stale node root), as a killed run would:
    # `up` must clean it and build a working lab over it.
    the_lab.network.create()
    (the_lab.state.nodes / "postgres-01" / "var/lib/postgresql/data").mkdir(parents=True)
    try:
        the_lab.up()
        yield the_lab
    finally:
        the_lab.down()


@pytest.fixture(scope="session")
def lab_spec_file(lab: object, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The test lab's spec as a file, for CLI calls (`--spec FILE`)."""
    path = tmp_path_factory.mktemp("spec") / "cluster.yml"
    path.write_text(spec_mod.dump(spec_mod.default_data(lab=True, name=LAB_NAME, subnet=LAB_SUBNET)))
    return str(path)
