"""The lab transport: nodes are network namespaces on this machine, services are supervisord programs.

The namespaces share one filesystem, so a node's files live under its own root directory (the plans of
:class:`~pgha.lab.target.LabTarget` carry that prefix); commands run through ``ip netns exec``.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from pgha.errors import PghaError, pgha_command
from pgha.files import DirEntry, FileEntry, LinkEntry
from pgha.lab.network import LabNames, LabNetwork
from pgha.lab.supervision import Supervisor, program_name
from pgha.layout import NodeLayout, StateLayout
from pgha.plan import SERVICE_BUILDERS, SYSTEM_USERS, NodePlan
from pgha.spec import ClusterSpec, Node
from pgha.transport import files_helper
from pgha.transport.base import CommandResult, FileStat, ProcessInfo, ServiceState, Transport, completed


def _sync(entries: list[DirEntry | FileEntry | LinkEntry]) -> bool:
    """The servers' writer (files_helper), in-process: nothing is changed by a path a service user could swap."""
    try:
        return bool(files_helper.sync(files_helper.items(entries), check=False))
    except SystemExit as exc:  # the helper's way of naming a missing user on a server
        raise PghaError(str(exc),
                        hint=f"run `{pgha_command('lab', 'up')}`, which creates the seed's system users") from None


class NetnsTransport(Transport):
    """Drives the lab of one cluster."""

    def __init__(self, spec: ClusterSpec, state: StateLayout | None = None) -> None:
        self.spec = spec
        self.state = state or StateLayout(spec.state_dir)
        self.names = LabNames(spec)
        self.supervisor = Supervisor(self.state)

    def netns(self, node: Node) -> str:
        return self.names.netns(node)

    # -- commands and files -----------------------------------------------------------------
    def run(self, node: Node, argv: list[str], *, timeout: float = 60,
            user: str | None = None) -> CommandResult:
        full = ["ip", "netns", "exec", self.netns(node)]
        if user and user != "root":
            full += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
        full += argv
        try:
            proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return CommandResult(tuple(full), 124, "", f"timed out after {timeout:g} s")
        return completed(proc, full)

    def unix_socket(self, node: Node, path: str, line: str, timeout: float = 3.0) -> str:
        """In-process: the lab's nodes share this machine's filesystem, and a unix socket is no network."""
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(timeout)
                s.connect(path)
                s.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := s.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise PghaError(f"{node.name}: {path}: {exc}") from None
        return b"".join(chunks).decode(errors="replace")

    def put_file(self, node: Node, entry: FileEntry) -> bool:
        return _sync([entry])

    def ensure_dir(self, node: Node, entry: DirEntry) -> bool:
        return _sync([entry])

    def ensure_link(self, node: Node, entry: LinkEntry) -> bool:
        return _sync([entry])

    def read_file(self, node: Node, path: str) -> bytes | None:
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:
            return None

    def remove_tree(self, node: Node, path: str) -> None:
        p = Path(path)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)

    def ensure_users(self, node: Node, users: tuple[str, ...]) -> None:
        for user in users:
            try:
                pwd.getpwnam(user)
            except KeyError:
                if user not in SYSTEM_USERS:
                    raise PghaError(f"user {user} is missing", hint="install its package") from None
                subprocess.run(["useradd", "--system", "--home", SYSTEM_USERS[user], "--shell", "/bin/false",
                                user], check=True, capture_output=True)

    # -- services -----------------------------------------------------------------------------
    def install_services(self, plans: list[NodePlan]) -> None:
        programs = [(p.node, self.netns(p.node), s) for p in plans for s in p.services]
        self.supervisor.write_config(programs)
        self.supervisor.start()

    def start(self, node: Node, service: str) -> None:
        self.supervisor.start_program(program_name(node, service))

    def stop(self, node: Node, service: str) -> None:
        self.supervisor.stop_program(program_name(node, service))

    def reload(self, node: Node, service: str) -> None:
        """The service's reload signal to its main process, as its unit's ExecReload sends it (HAProxy's
        master gets USR2 and starts new workers; the old ones finish their connections)."""
        sig = SERVICE_BUILDERS[service](NodeLayout(self.spec, node), False).reload_signal
        pid = self.supervisor.program_pid(program_name(node, service))
        if sig is None or pid is None:
            raise PghaError(f"{node.name}: {service} " + ("is not running" if sig else "has no reload"))
        os.kill(pid, getattr(signal, f"SIG{sig}"))

    def kill(self, node: Node, service: str, sig: str = "KILL", hold: bool = False) -> None:
        if hold:
            self.supervisor.kill_and_hold(program_name(node, service), sig)
        else:
            self.supervisor.signal_all(program_name(node, service), sig)

    def service_state(self, node: Node, service: str) -> ServiceState:
        info = self.supervisor.info(program_name(node, service))
        running = info.get("statename") == "RUNNING"
        return ServiceState(node.name, service, running, int(info["pid"]) if running else None,
                            str(info.get("statename", "?")).lower())

    def logs(self, node: Node, service: str, lines: int = 50) -> str:
        path = self.state.log_file(node, service)
        if not path.exists():
            return ""
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 200 * lines))
            text = f.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def isolate(self, node: Node) -> None:
        LabNetwork(self.spec).isolate(node)

    def heal(self, node: Node) -> None:
        LabNetwork(self.spec).heal(node)

    def freeze(self, node: Node, pg_data: str) -> list[int]:
        from pgha.lab.freeze import freeze_node

        return freeze_node(self, node, pg_data)

    def thaw(self, node: Node, pids: list[int]) -> None:
        from pgha.lab.freeze import resume

        resume(pids)

    # -- inspection (doctor) ----------------------------------------------------------------------
    def file_stat(self, node: Node, path: str) -> FileStat | None:
        import stat

        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
        try:
            group = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            group = str(st.st_gid)
        return FileStat(path, owner, group, stat.S_IMODE(st.st_mode), stat.S_ISDIR(st.st_mode))

    def readable_by(self, node: Node, path: str, user: str) -> bool:
        # One filesystem for every namespace: no need to enter the node's namespace to ask.
        proc = subprocess.run(["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--",
                               "test", "-r", path], capture_output=True, timeout=10)
        return proc.returncode == 0

    def processes(self, node: Node) -> list[ProcessInfo]:
        """The processes in the node's namespace (the PID space is shared: `ps` would see every node)."""
        proc = subprocess.run(["ip", "netns", "pids", self.netns(node)], capture_output=True, text=True,
                              timeout=10)
        out = []
        for word in proc.stdout.split():
            try:
                pid = int(word)
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
                status = Path(f"/proc/{pid}/status").read_text()
            except (ValueError, OSError):
                continue  # gone meanwhile
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            uid = int(fields.get("Uid", "0").split()[0])
            try:
                user = pwd.getpwuid(uid).pw_name
            except KeyError:
                user = str(uid)
            out.append(ProcessInfo(pid, int(fields.get("PPid", "0").strip()), user,
                                   tuple(a.decode(errors="replace") for a in argv if a)))
        return out
