"""Issue 18, item 5: what a spec value or a file writable by postgres can make root run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pgha import spec as spec_mod
from pgha.errors import PghaError
from pgha.layout import NodeLayout
from pgha.plan import DirEntry, FileEntry, NodePlan
from pgha.render import etcd as etcd_render
from pgha.spec import Node
from pgha.transport.base import CommandResult, ServiceState, Transport


class PidFileTransport(Transport):
    """A node whose postmaster.pid and process owners are given; records every command and its user."""

    def __init__(self, pid_file: bytes | None, owners: dict[int, str]) -> None:
        self.pid_file, self.owners = pid_file, owners
        self.commands: list[tuple[tuple[str, ...], str | None]] = []

    def run(self, node: Node, argv: list[str], *, timeout: float = 60, user: str | None = None) -> CommandResult:
        self.commands.append((tuple(argv), user))
        if argv[0] == "stat":
            owner = self.owners.get(int(argv[-1].removeprefix("/proc/")))
            return CommandResult(tuple(argv), 0 if owner else 1, f"{owner}\n" if owner else "", "")
        return CommandResult(tuple(argv), 0, "", "")

    def read_file(self, node: Node, path: str) -> bytes | None:
        return self.pid_file if path.endswith("/postmaster.pid") else None

    def put_file(self, node: Node, entry: FileEntry) -> bool: raise NotImplementedError
    def ensure_dir(self, node: Node, entry: DirEntry) -> bool: raise NotImplementedError
    def remove_tree(self, node: Node, path: str) -> None: raise NotImplementedError
    def ensure_users(self, node: Node, users: tuple[str, ...]) -> None: raise NotImplementedError
    def install_services(self, plans: list[NodePlan]) -> None: raise NotImplementedError
    def start(self, node: Node, service: str) -> None: raise NotImplementedError
    def stop(self, node: Node, service: str) -> None: raise NotImplementedError
    def kill(self, node: Node, service: str, sig: str = "KILL", hold: bool = False) -> None: raise NotImplementedError
    def service_state(self, node: Node, service: str) -> ServiceState: raise NotImplementedError
    def logs(self, node: Node, service: str, lines: int = 50) -> str: raise NotImplementedError


SPEC = spec_mod.parse(spec_mod.default_data(lab=True))
PG = SPEC.postgres_nodes[0]


def kills(t: PidFileTransport) -> list[tuple[tuple[str, ...], str | None]]:
    return [c for c in t.commands if c[0][0] == "kill"]


@pytest.mark.parametrize("content", [b"-1\n/var/lib/postgresql/data\n", b"1\n", b"0\n", b"12 34\n", b"$(id)\n",
                                     b"99999999999\n"])
def test_a_postmaster_pid_that_is_no_process_id_is_refused(content: bytes) -> None:
    t = PidFileTransport(content, {1: "root"})
    with pytest.raises(PghaError, match=r"postmaster.pid holds .*not a postmaster's pid: nothing signalled"):
        t.kill_postmaster(PG, "/var/lib/postgresql/data")
    assert kills(t) == []


def test_a_pid_of_another_users_process_is_refused() -> None:
    t = PidFileTransport(b"4242\n", {4242: "root"})
    with pytest.raises(PghaError, match=r"pid 4242 .* belongs to root, not postgres: nothing signalled"):
        t.kill_postmaster(PG, "/var/lib/postgresql/data")
    assert kills(t) == []


def test_the_postmaster_is_signalled_as_postgres() -> None:
    t = PidFileTransport(b"4242\n/var/lib/postgresql/data\n", {4242: "postgres"})
    assert t.kill_postmaster(PG, "/var/lib/postgresql/data", "STOP") == 4242
    assert kills(t) == [(("kill", "-STOP", "4242"), "postgres")]


def test_no_process_no_signal() -> None:
    t = PidFileTransport(b"4242\n", {})
    assert t.kill_postmaster(PG, "/var/lib/postgresql/data") is None
    assert kills(t) == []
    assert PidFileTransport(None, {}).kill_postmaster(PG, "/d") is None


def test_a_signal_name_is_a_word() -> None:
    t = PidFileTransport(b"4242\n", {4242: "postgres"})
    with pytest.raises(PghaError, match="not a signal name"):
        t.kill_postmaster(PG, "/var/lib/postgresql/data", "KILL; id")


def test_sourcing_the_etcd_env_file_runs_nothing(tmp_path: Path) -> None:
    """The lab's wrapper sources etcd.env as root: a value reaching it (past the spec's check) stays a value."""
    marker = tmp_path / "ran"
    hostile = f"$(touch {marker})`touch {marker}`'\"\\;x"
    cluster = SPEC.cluster.model_copy(update={"etcd_token": hostile})
    layout = NodeLayout(SPEC.model_copy(update={"cluster": cluster}), PG)
    env = tmp_path / "etcd.env"
    env.write_text(etcd_render.render_env(layout, "new"))
    out = subprocess.run(["sh", "-c", f'set -a; . "{env}"; set +a; printf %s "$ETCD_INITIAL_CLUSTER_TOKEN"'],
                         capture_output=True, text=True, check=True).stdout
    assert out == hostile
    assert not marker.exists()
    assert etcd_render.parse_env(env.read_text())["ETCD_INITIAL_CLUSTER_TOKEN"] == hostile
