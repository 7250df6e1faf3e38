"""The Transport interface: everything the orchestration, operations and drills need from a host.

Public methods wrap a few abstract ones (as Patroni's AbstractDCS does): an implementation provides
running a command, writing a file with owner/mode/ACL, controlling a named service, and reading its
log. A :class:`~pgha.target.Target` holds one, with the plans and layout roots that go with it.
Loads neither the plan builder nor the renderers (a plan is only a type here).
"""

from __future__ import annotations

import abc
import re
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pgha.errors import PghaError
from pgha.files import DirEntry, FileEntry, LinkEntry
from pgha.spec import Node

if TYPE_CHECKING:
    from pgha.plan import NodePlan


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass(frozen=True)
class ServiceState:
    node: str
    service: str
    running: bool
    pid: int | None
    detail: str


POSTGRES_USER = "postgres"


class Transport(abc.ABC):
    """A way to act on the nodes of one cluster."""

    # -- commands and files -----------------------------------------------------------------
    @abc.abstractmethod
    def run(self, node: Node, argv: list[str], *, timeout: float = 60,
            user: str | None = None) -> CommandResult:
        """Run a command on the node (as root, or as ``user``)."""

    @abc.abstractmethod
    def put_file(self, node: Node, entry: FileEntry) -> bool:
        """Write a file with its owner, mode and ACL; return True if anything changed."""

    @abc.abstractmethod
    def ensure_dir(self, node: Node, entry: DirEntry) -> bool:
        """Create a directory with its owner, mode and ACL; return True if anything changed."""

    def ensure_link(self, node: Node, entry: LinkEntry) -> bool:
        """Make ``entry.path`` a symbolic link to ``entry.target``; return True if anything changed."""
        script = 'test "$(readlink -- "$1")" = "$2" && exit 3; mkdir -p -- "$(dirname -- "$1")" && ln -sfn -- "$2" "$1"'
        res = self.run(node, ["sh", "-c", script, "-", entry.path, entry.target])
        if res.returncode not in (0, 3):
            raise PghaError(f"{node.name}: linking {entry.path} failed", details=res.stderr.strip())
        return res.returncode == 0

    @abc.abstractmethod
    def read_file(self, node: Node, path: str) -> bytes | None:
        """A file's content, or None if it does not exist."""

    @abc.abstractmethod
    def remove_tree(self, node: Node, path: str) -> None:
        """Remove a file or directory tree (data wipes on reset)."""

    @abc.abstractmethod
    def ensure_users(self, node: Node, users: tuple[str, ...]) -> None:
        """Create the system users a node's services run as."""

    # -- services -----------------------------------------------------------------------------
    @abc.abstractmethod
    def install_services(self, plans: list[NodePlan]) -> None:
        """Make the service manager know every service of the plans (units / programs)."""

    @abc.abstractmethod
    def start(self, node: Node, service: str) -> None: ...

    @abc.abstractmethod
    def stop(self, node: Node, service: str) -> None: ...

    @abc.abstractmethod
    def kill(self, node: Node, service: str, sig: str = "KILL", hold: bool = False) -> None:
        """Signal the service's main process; the restart policy applies unless ``hold`` keeps it down."""

    @abc.abstractmethod
    def service_state(self, node: Node, service: str) -> ServiceState: ...

    @abc.abstractmethod
    def logs(self, node: Node, service: str, lines: int = 50) -> str: ...

    def reload(self, node: Node, service: str) -> None:
        """Make the running service re-read its files without a restart (systemd's ExecReload: Patroni and
        keepalived SIGHUP, HAProxy a seamless reload)."""
        raise NotImplementedError(f"{type(self).__name__} cannot reload a service")

    # -- shared behaviour -----------------------------------------------------------------------
    def restart(self, node: Node, service: str) -> None:
        self.stop(node, service)
        self.start(node, service)

    def apply(self, plan: NodePlan) -> list[str]:
        """Users, directories, files then links of a plan; returns the paths that changed."""
        self.ensure_users(plan.node, plan.users)
        changed = [d.path for d in plan.dirs if self.ensure_dir(plan.node, d)]
        changed += [f.path for f in plan.files if self.put_file(plan.node, f)]
        changed += [ln.path for ln in plan.links if self.ensure_link(plan.node, ln)]
        return changed

    def kill_postmaster(self, node: Node, pg_data: str, sig: str = "KILL") -> int | None:
        """Signal the node's postmaster (pid from postmaster.pid), as ``postgres``; its pid, None if not running.

        postmaster.pid is writable by postgres (and so by any SQL superuser): a pid that is not a positive
        integer above 1, or whose process is not postgres's, is refused — and the signal is sent as
        postgres, so even a pid reused in between cannot reach another user's process.
        """
        content = self.read_file(node, f"{pg_data}/postmaster.pid")
        if not content:
            return None
        first = content.decode(errors="replace").splitlines()[0].strip() if content.strip() else ""
        if not re.fullmatch(r"[A-Z0-9]{1,8}", sig):
            raise PghaError(f"{sig!r} is not a signal name")
        if not re.fullmatch(r"[1-9][0-9]{0,9}", first) or int(first) <= 1:
            raise PghaError(f"{node.name}: {pg_data}/postmaster.pid holds {first!r}, not a postmaster's pid: "
                            "nothing signalled", hint="the file was altered; look at who can write it")
        pid = int(first)
        owner = self.run(node, ["stat", "-c", "%U", f"/proc/{pid}"], timeout=10)
        if not owner.ok:
            return None  # no such process: PostgreSQL is not running
        if owner.stdout.strip() != POSTGRES_USER:
            raise PghaError(f"{node.name}: pid {pid} from {pg_data}/postmaster.pid belongs to "
                            f"{owner.stdout.strip() or 'nobody'}, not {POSTGRES_USER}: nothing signalled",
                            hint="the file was altered or the pid was reused; look at who can write it")
        res = self.run(node, ["kill", f"-{sig}", str(pid)], user=POSTGRES_USER)
        return pid if res.ok else None

    def crash_node(self, node: Node, pg_data: str, services: tuple[str, ...]) -> list[str]:
        """A node's crash: every service SIGKILLed and held down (no restart policy brings it back) until
        started again; the postmaster, which Patroni detaches, by its pid. Returns what was killed."""
        killed = []
        # Patroni (then its postmaster) before etcd, keepalived before HAProxy: the service that acts on
        # the others' state dies first, as if all had died at once.
        for service in reversed(services):
            pid = self.service_state(node, service).pid
            self.kill(node, service, "KILL", hold=True)
            killed.append(f"{service} (pid {pid})" if pid else f"{service} (not running)")
            if service == "patroni":
                pm = self.kill_postmaster(node, pg_data, "KILL")
                killed.append(f"postmaster (pid {pm})" if pm else "postmaster (not running)")
        return killed

    def isolate(self, node: Node) -> None:
        """Cut the node off the network, its processes left running (a partition)."""
        raise NotImplementedError(f"{type(self).__name__} cannot isolate a node")

    def heal(self, node: Node) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot heal a node")

    def freeze(self, node: Node, pg_data: str) -> list[int]:
        """Stop (SIGSTOP) the node's Patroni and every PostgreSQL process, as a hung machine; the pids."""
        raise NotImplementedError(f"{type(self).__name__} cannot freeze a node")

    def thaw(self, node: Node, pids: list[int]) -> None:
        """Continue (SIGCONT) what :meth:`freeze` stopped."""
        raise NotImplementedError(f"{type(self).__name__} cannot thaw a node")

    def unix_socket(self, node: Node, path: str, line: str, timeout: float = 3.0) -> str:
        """Send one line to a unix socket on the node and return all it answers until it closes (HAProxy's
        runtime API), through a few lines of the node's own Python: isolated and without site, it starts
        in ~40 ms (a pyenv shim takes ~0.5 s)."""
        res = self.run(node, ["/usr/bin/python3", "-I", "-S", "-c", UNIX_CLIENT, path, line], timeout=timeout)
        if not res.ok:
            raise PghaError(f"{node.name}: {path}: " + (res.stderr.strip().splitlines() or ["no answer"])[-1])
        return res.stdout

    def holds_address(self, node: Node, address: str, interface: str) -> bool:
        """Whether the node has ``address`` on ``interface`` (the VIP check)."""
        res = self.run(node, ["ip", "-o", "addr", "show", "dev", interface])
        return f" {address}/" in res.stdout

    # -- inspection (doctor) ----------------------------------------------------------------------
    def file_stat(self, node: Node, path: str) -> FileStat | None:
        """Owner, group and mode of a file or directory; None if it does not exist."""
        res = self.run(node, ["stat", "-c", "%U %G %a %F", path], timeout=10)
        if not res.ok:
            return None
        owner, group, mode, kind = res.stdout.strip().split(" ", 3)
        return FileStat(path, owner, group, int(mode, 8), kind == "directory")

    def readable_by(self, node: Node, path: str, user: str) -> bool:
        """Whether ``user`` can open the file for reading (owner, mode, ACLs and the directories above)."""
        return self.run(node, ["test", "-r", path], user=user, timeout=10).ok

    def processes(self, node: Node) -> list[ProcessInfo]:
        """The processes running on the node (pid, parent, user, command line)."""
        res = self.run(node, ["ps", "-eo", "pid=,ppid=,user=,args="], timeout=10)
        out = []
        for line in res.stdout.splitlines():
            parts = line.split(None, 3)
            if len(parts) == 4 and parts[0].isdigit():
                out.append(ProcessInfo(int(parts[0]), int(parts[1]), parts[2], tuple(parts[3].split())))
        return out


UNIX_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\\n")
out = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    out += chunk
sys.stdout.write(out.decode(errors="replace"))
"""
"""What :meth:`Transport.unix_socket` runs on the node (``python3 -c``): one line in, the answer out."""


def completed(proc: subprocess.CompletedProcess[str], argv: list[str]) -> CommandResult:
    return CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


@dataclass(frozen=True)
class FileStat:
    path: str
    owner: str
    group: str
    mode: int
    is_dir: bool = False


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    user: str
    argv: tuple[str, ...]
