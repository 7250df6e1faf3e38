"""The server transport: nodes are SSH hosts (asyncssh), services are systemd units.

One asyncio event loop runs in a background thread and holds one SSH connection per node, reused by
every command (and shared by threads that act on several nodes at once). Host keys are checked
against a key pinned in the spec or against known_hosts; an unknown key is never accepted. Commands
run as root directly, or through ``sudo -n`` when the SSH user is not root.

Faults go through systemd as on any server: ``systemctl kill`` signals a unit's main process, a held
fault follows it with ``systemctl stop`` (which also cancels a pending ``Restart=``). A partition is
made with ``prohibit`` routes to every other node of the cluster: the node keeps its link (and this
machine's SSH session to it), but cannot talk to, or answer, its peers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shlex
import threading
from collections.abc import Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from pgha import poll
from pgha.errors import PghaError, pgha_command
from pgha.files import DirEntry, FileEntry, LinkEntry
from pgha.plan import SYSTEM_USERS, NodePlan
from pgha.spec import ClusterSpec, Node, SshTarget
from pgha.transport import files_helper
from pgha.transport.base import CommandResult, ServiceState, Transport

T = TypeVar("T")
HOLD_TIMEOUT = 15.0


class SshError(PghaError):
    """A server cannot be reached, or refuses us (host key, authentication)."""


@dataclass(frozen=True)
class FileChange:
    """What :meth:`SshTransport.sync_entries` changed (or would change) on one path."""

    node: str
    path: str
    changes: tuple[str, ...]
    old: bytes | None
    """The previous content (check mode, text small enough to diff), None when new or not sent."""


def known_hosts_for(target: SshTarget) -> Any:
    """asyncssh's ``known_hosts`` argument: the pinned key, else the known_hosts file (never None)."""
    if target.host_key:
        try:
            key = asyncssh.import_public_key(target.host_key)
        except (asyncssh.KeyImportError, ValueError) as exc:
            raise SshError(f"{target.host}: the pinned host key cannot be read: {exc}") from None
        return ([key], [], [])
    path = Path(target.known_hosts or Path.home() / ".ssh" / "known_hosts").expanduser()
    if not path.exists():
        raise SshError(f"{target.host}: no host key pinned in the spec and no {path}",
                       hint="pin the server's key as nodes[].ssh.host_key (the line of /etc/ssh/ssh_host_ed25519_key"
                            ".pub), or add it to known_hosts after checking its fingerprint (ssh-keyscan + compare)")
    return str(path)


class SshTransport(Transport):
    """Drives the servers of one cluster over SSH, services through systemd."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._conns: dict[str, asyncssh.SSHClientConnection] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._start_lock = threading.Lock()

    # -- the event loop and connections ------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=loop.run_forever, name="pgha-ssh", daemon=True)
                self._thread.start()
                self._loop = loop
            return self._loop

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())
        return future.result(timeout)

    def close(self) -> None:
        """Close every connection and stop the loop (safe to call twice)."""
        if self._loop is None:
            return

        async def _close() -> None:
            for conn in self._conns.values():
                conn.close()
            for conn in self._conns.values():
                await conn.wait_closed()
            self._conns.clear()

        with contextlib.suppress(Exception):  # closing is best effort
            self._call(_close(), timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(timeout=5)
        self._loop.close()
        self._loop, self._thread = None, None

    def __enter__(self) -> SshTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _connection(self, node: Node) -> asyncssh.SSHClientConnection:
        lock = self._locks.setdefault(node.name, asyncio.Lock())
        async with lock:
            conn = self._conns.get(node.name)
            if conn is not None and not conn.is_closed():
                return conn
            t = self.spec.ssh_of(node)
            options: dict[str, Any] = {"known_hosts": known_hosts_for(t), "username": t.user, "port": t.port,
                                       "connect_timeout": t.connect_timeout, "keepalive_interval": 5,
                                       "keepalive_count_max": 3,
                                       # AES-GCM first: hardware-accelerated, the bundle goes through it.
                                       "encryption_algs": ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
                                                           "chacha20-poly1305@openssh.com", "aes128-ctr",
                                                           "aes256-ctr"]}
            if t.key_file:
                options["client_keys"] = [str(Path(t.key_file).expanduser())]
                options["agent_path"] = None
            try:
                conn = await asyncssh.connect(t.host, **options)
            except asyncssh.HostKeyNotVerifiable as exc:
                raise SshError(f"{node.name} ({t.host}): host key not trusted: {exc.reason}",
                               hint="the server's key differs from the pinned/known one, or is unknown: check "
                                    "its fingerprint, then pin it in nodes[].ssh.host_key") from None
            except asyncssh.PermissionDenied:
                raise SshError(f"{node.name} ({t.host}): SSH authentication failed as {t.user}",
                               hint="check deploy.ssh.user and key_file (or nodes[].ssh)") from None
            except (TimeoutError, OSError, asyncssh.Error) as exc:
                raise SshError(f"{node.name} ({t.host}:{t.port}): cannot connect: {exc or type(exc).__name__}",
                               hint="is the server up, and SSH open from this machine?") from None
            self._conns[node.name] = conn
            return conn

    async def _exec(self, node: Node, command: str, stdin: bytes | None, timeout: float) -> CommandResult:
        for attempt in (1, 2):
            conn = await self._connection(node)
            try:
                proc = await conn.run(command, input=stdin, encoding=None, timeout=timeout, check=False)
            except asyncssh.TimeoutError:
                return CommandResult((command,), 124, "", f"timed out after {timeout:g} s")
            except (asyncssh.ConnectionLost, asyncssh.DisconnectError, asyncssh.ChannelOpenError,
                    BrokenPipeError, ConnectionError):
                self._conns.pop(node.name, None)  # a rebooted or power-cycled server: reconnect once
                if attempt == 2:
                    raise
                continue
            out = proc.stdout if isinstance(proc.stdout, bytes) else (proc.stdout or "").encode()
            err = proc.stderr if isinstance(proc.stderr, bytes) else (proc.stderr or "").encode()
            code = proc.exit_status if proc.exit_status is not None else 255
            return CommandResult((command,), code, out.decode(errors="replace"), err.decode(errors="replace"))
        raise AssertionError("unreachable")

    async def _exec_bytes(self, node: Node, command: str, timeout: float) -> tuple[int, bytes]:
        conn = await self._connection(node)
        proc = await conn.run(command, encoding=None, timeout=timeout, check=False)
        out = proc.stdout if isinstance(proc.stdout, bytes) else b""
        return (proc.exit_status if proc.exit_status is not None else 255), out

    def _as_root(self, node: Node, argv: list[str], user: str | None = None) -> str:
        """The command line that runs ``argv`` as root (or as ``user``), directly or through sudo."""
        login = self.spec.ssh_of(node).user
        if user and user != "root":
            prefix = ["runuser", "-u", user, "--"] if login == "root" else ["sudo", "-n", "-u", user, "--"]
        else:
            prefix = [] if login == "root" else ["sudo", "-n", "--"]
        return shlex.join(prefix + argv)

    def shell(self, node: Node, script: str, *, timeout: float = 60, stdin: bytes | None = None) -> CommandResult:
        """Run a shell script as root on the node."""
        return self._call(self._exec(node, self._as_root(node, ["sh", "-c", script]), stdin, timeout),
                          timeout + 30)

    def check(self, node: Node, argv: list[str], what: str, *, timeout: float = 60) -> CommandResult:
        """Run a command; fail with its output when it does not succeed."""
        res = self.run(node, argv, timeout=timeout)
        if not res.ok:
            raise PghaError(f"{node.name}: {what} failed (exit {res.returncode})",
                            details=(res.stderr or res.stdout).strip()[-2000:])
        return res

    def parallel(self, items: Iterable[Any], fn: Any) -> list[Any]:
        """``fn(item)`` for every node (or per-node item) at once: one thread each, sharing the connections."""
        todo = list(items)
        if not todo:
            return []
        with ThreadPoolExecutor(max_workers=len(todo)) as pool:
            return list(pool.map(fn, todo))

    # -- commands and files ----------------------------------------------------------------------
    def run(self, node: Node, argv: list[str], *, timeout: float = 60,
            user: str | None = None) -> CommandResult:
        res = self._call(self._exec(node, self._as_root(node, argv, user), None, timeout), timeout + 30)
        return CommandResult(tuple(argv), res.returncode, res.stdout, res.stderr)

    def sync_entries(self, node: Node, entries: Iterable[FileEntry | DirEntry | LinkEntry], *,
                     check: bool = False) -> list[FileChange]:
        """Bring files, directories and links to their content, owner, mode and ACL in one round trip;
        with ``check`` only report what would change (with the old content, for diffs)."""
        items = files_helper.items(entries)
        if not items:
            return []
        payload = json.dumps({"check": check, "entries": items}).encode()
        res = self._call(self._exec(node, self._as_root(node, ["python3", "-c", files_helper.source()]),
                                    payload, 120), 150)
        if not res.ok:
            raise PghaError(f"{node.name}: writing files failed (exit {res.returncode})",
                            details=res.stderr.strip()[-2000:],
                            hint="pgha needs python3 on the server (every Debian/Ubuntu server has it)")
        return [FileChange(node.name, r["path"], tuple(r["changes"]),
                           base64.b64decode(r["old"]) if r.get("old") else None) for r in json.loads(res.stdout)]

    def put_file(self, node: Node, entry: FileEntry) -> bool:
        return bool(self.sync_entries(node, [entry]))

    def ensure_dir(self, node: Node, entry: DirEntry) -> bool:
        return bool(self.sync_entries(node, [entry]))

    def apply(self, plan: NodePlan) -> list[str]:
        """Users, then directories and files in one round trip; returns the paths that changed."""
        self.ensure_users(plan.node, plan.users)
        return [c.path for c in self.sync_entries(plan.node, plan.entries)]

    def read_file(self, node: Node, path: str) -> bytes | None:
        cmd = self._as_root(node, ["sh", "-c", 'test -e "$1" || exit 3; cat -- "$1"', "-", path])
        code, out = self._call(self._exec_bytes(node, cmd, 60), 90)
        if code == 3:
            return None
        if code != 0:
            raise PghaError(f"{node.name}: cannot read {path} (exit {code})")
        return out

    def remove_tree(self, node: Node, path: str) -> None:
        if path.rstrip("/") in ("", "/etc", "/var", "/usr", "/var/lib"):
            raise PghaError(f"refusing to remove {path} on {node.name}")
        self.check(node, ["rm", "-rf", "--", path], f"removing {path}")

    def ensure_users(self, node: Node, users: tuple[str, ...]) -> None:
        script = []
        for user in users:
            if user in SYSTEM_USERS:
                home = shlex.quote(SYSTEM_USERS[user])
                script.append(f"id -u {user} >/dev/null 2>&1 || useradd --system --home {home} "
                              f"--shell /bin/false {user}")
            else:
                script.append(f"id -u {user} >/dev/null 2>&1 || {{ echo 'user {user} is missing "
                              f"(its package is not installed)' >&2; exit 1; }}")
        res = self.shell(node, "\n".join(["set -e", *script]))
        if not res.ok:
            raise PghaError(f"{node.name}: system users: {res.stderr.strip()}",
                            hint=f"run `{pgha_command('deploy')}`, which installs the packages first")

    # -- services (systemd) ----------------------------------------------------------------------
    def install_services(self, plans: list[NodePlan]) -> None:
        """daemon-reload and enable every service of the plans (the unit files are plan files)."""
        def one(plan: NodePlan) -> None:
            names = " ".join(s.name for s in plan.services)
            timers = f" && systemctl enable --now --quiet {' '.join(plan.timers)}" if plan.timers else ""
            res = self.shell(plan.node, f"systemctl daemon-reload && systemctl enable --quiet {names}{timers}")
            if not res.ok:
                raise PghaError(f"{plan.node.name}: enabling {names} failed", details=res.stderr.strip())

        self.parallel([p for p in plans], lambda p: one(p))

    def start(self, node: Node, service: str) -> None:
        # --no-block: etcd is Type=notify and reports ready only once a quorum exists, which needs
        # the other members started too; the orchestrator waits for the real outcome.
        res = self.shell(node, f"systemctl reset-failed {service} 2>/dev/null; "
                               f"systemctl start --no-block {service}")
        if not res.ok:
            raise PghaError(f"{node.name}: systemctl start {service} failed", details=res.stderr.strip())

    def stop(self, node: Node, service: str) -> None:
        res = self.run(node, ["systemctl", "stop", service], timeout=120)
        if not res.ok:
            raise PghaError(f"{node.name}: systemctl stop {service} failed", details=res.stderr.strip())

    def reload(self, node: Node, service: str) -> None:
        """The unit's ExecReload (Patroni and keepalived: SIGHUP; HAProxy: a seamless reload)."""
        res = self.run(node, ["systemctl", "reload", service], timeout=60)
        if not res.ok:
            raise PghaError(f"{node.name}: systemctl reload {service} failed", details=res.stderr.strip())

    def restart(self, node: Node, service: str) -> None:
        # Stopped first, then started without waiting: the caller's health wait sees it come back.
        res = self.shell(node, f"systemctl stop {service} && systemctl reset-failed {service} 2>/dev/null; "
                               f"systemctl start --no-block {service}", timeout=150)
        if not res.ok:
            raise PghaError(f"{node.name}: systemctl restart {service} failed", details=res.stderr.strip())

    def kill(self, node: Node, service: str, sig: str = "KILL", hold: bool = False) -> None:
        sig = sig.upper().removeprefix("SIG")
        kill = f"systemctl kill --kill-who=main -s SIG{sig} {service}"
        if not hold:
            self.check(node, ["sh", "-c", kill], f"systemctl kill {service}")
            return
        # In one command: the stop lands milliseconds after the signal, long before any RestartSec
        # (>= 1 s) elapses; a stop also cancels a restart already scheduled.
        self.shell(node, f"{kill}; systemctl stop {service}", timeout=60)
        def down() -> tuple[bool, str]:
            if not self.service_state(node, service).running:
                return True, "stopped"
            self.run(node, ["systemctl", "stop", service], timeout=60)
            return False, "still running"

        try:
            poll.until(f"{service} held down", down, HOLD_TIMEOUT, interval=0.2)
        except poll.TimedOut:
            raise PghaError(f"{node.name}: {service} did not stay down after SIG{sig} + systemctl stop") from None

    def service_states(self, node: Node, services: Iterable[str]) -> dict[str, ServiceState]:
        """Every named unit's state in one command."""
        names = list(services)
        res = self.run(node, ["systemctl", "show", "-p", "Id,ActiveState,SubState,MainPID,LoadState",
                              *[f"{s}.service" for s in names]], timeout=30)
        blocks = [dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
                  for block in res.stdout.strip().split("\n\n") if block.strip()]
        out = {}
        for name, props in zip(names, blocks, strict=False):
            active = props.get("ActiveState", "unknown")
            pid = int(props.get("MainPID", "0") or 0)
            running = active in ("active", "reloading") and props.get("SubState") == "running"
            detail = active if props.get("LoadState") != "not-found" else "not installed"
            out[name] = ServiceState(node.name, name, running, pid or None, f"{detail}/{props.get('SubState')}")
        for name in names:
            out.setdefault(name, ServiceState(node.name, name, False, None, f"unknown: {res.stderr.strip()}"))
        return out

    def service_state(self, node: Node, service: str) -> ServiceState:
        return self.service_states(node, [service])[service]

    def logs(self, node: Node, service: str, lines: int = 50) -> str:
        res = self.run(node, ["journalctl", "-u", f"{service}.service", "-n", str(lines), "--no-pager",
                              "-o", "short-precise"], timeout=30)
        return res.stdout.strip()

    # -- network faults ----------------------------------------------------------------------------
    def _peers(self, node: Node) -> list[str]:
        return [str(n.address) for n in self.spec.nodes if n != node] + (
            [str(self.spec.vip.address)] if not node.is_haproxy else [])

    def isolate(self, node: Node) -> None:
        """Drop the node's traffic with every other node and the VIP (``prohibit`` routes)."""
        script = "; ".join(f"ip route replace prohibit {a}/32" for a in self._peers(node))
        self.check(node, ["sh", "-c", script], "isolating (ip route prohibit)")

    def heal(self, node: Node) -> None:
        script = "; ".join(f"ip route del prohibit {a}/32 2>/dev/null" for a in self._peers(node))
        self.run(node, ["sh", "-c", script + "; true"])

    def is_isolated(self, node: Node) -> bool:
        res = self.run(node, ["ip", "route", "show", "type", "prohibit"])
        return any(a in res.stdout for a in self._peers(node))
