"""The lab's init system: one supervisord per lab, one program per node and service.

supervisord (a well-kept process supervisor) gives what systemd gives a server: a restart policy per
service (mapped from the same :class:`~pgha.service.Service` that becomes a systemd unit), a log file
per service, and start/stop/signal by name. Each program is a small wrapper script that loads the
service's environment file, enters the node's network namespace and drops to the service's user —
then ``exec``s the daemon, so supervisord's pid is the daemon's pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

from pgha import poll
from pgha.errors import PghaError
from pgha.layout import StateLayout
from pgha.service import Service
from pgha.spec import Node

PRIVATE_UMASK = 0o077
"""supervisord's umask: the log files it creates are readable by root only."""


def program_name(node: Node, service: str) -> str:
    return f"{node.name}--{service}"


def _wrapper(netns: str, service: Service, hold: Path) -> str:
    lines = ["#!/bin/sh", f"# pgha lab: {service.description} in {netns}", "set -e",
             # A held-down service must not come back through the restart policy (see kill_and_hold).
             f"if [ -e {shlex.quote(str(hold))} ]; then echo 'pgha: held down'; exit 0; fi"]
    if service.env_file:
        lines.append(f"set -a; . {shlex.quote(service.env_file)}; set +a")
    for key, value in service.environment:
        lines.append(f"export {key}={shlex.quote(value)}")
    if service.working_dir:
        lines.append(f"cd {shlex.quote(service.working_dir)}")
    drop = []
    if service.user != "root":
        drop = ["setpriv", f"--reuid={service.user}", f"--regid={service.group}", "--init-groups", "--"]
    argv = ["ip", "netns", "exec", netns, *drop, *service.argv]
    lines.append("exec " + " ".join(shlex.quote(a) for a in argv))
    return "\n".join(lines) + "\n"


def _program(name: str, wrapper: Path, log: Path, service: Service) -> str:
    autorestart = {"always": "true", "on-failure": "unexpected", "no": "false"}[service.restart]
    return "\n".join([
        f"[program:{name}]",
        f"command={wrapper}",
        "autostart=false",
        f"autorestart={autorestart}",
        "exitcodes=0",
        "startsecs=1",
        "startretries=1000",
        f"stopsignal={service.stop_signal}",
        f"stopwaitsecs={service.stop_timeout}",
        "directory=/",  # not supervisord's own (private) directory; the wrapper enters the working_dir
        # KillMode=process (Patroni): signal the main process only; it stops PostgreSQL itself.
        # supervisord runs with umask 077 (its logs are private); a daemon gets systemd's default.
        "umask=022",
        f"stopasgroup={'false' if service.kill_mode == 'process' else 'true'}",
        f"killasgroup={'false' if service.kill_mode == 'process' else 'true'}",
        "redirect_stderr=true",
        f"stdout_logfile={log}",
        "stdout_logfile_maxbytes=20MB",
        "stdout_logfile_backups=1",
        "",
    ])


class Supervisor:
    """Controls the lab's supervisord over its unix socket (XML-RPC)."""

    def __init__(self, state: StateLayout) -> None:
        self.state = state
        self.dir = state.supervisor
        self.conf = self.dir / "supervisord.conf"
        self.socket = self.dir / "supervisor.sock"
        self.pidfile = self.dir / "supervisord.pid"

    # -- configuration ------------------------------------------------------------------------
    def write_config(self, programs: list[tuple[Node, str, Service]]) -> None:
        """programs: (node, netns, service) for every service of the lab."""
        bindir = self.dir / "bin"
        for private in (self.dir, bindir, self.state.logs):
            private.mkdir(mode=0o700, parents=True, exist_ok=True)
            private.chmod(0o700)
        # Logs may hold what a daemon printed about credentials: owner-only, also those kept from before.
        for log in self.state.logs.iterdir():
            log.chmod(0o600)
        parts = [
            "[unix_http_server]", f"file={self.socket}", "chmod=0700", "",
            "[supervisord]", f"pidfile={self.pidfile}", f"logfile={self.state.logs / 'supervisord.log'}",
            f"umask={PRIVATE_UMASK:03o}",
            "logfile_maxbytes=5MB", "loglevel=info", f"directory={self.dir}", "minfds=1024", "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
        ]
        stop_post: dict[str, list[list[str]]] = {}
        for node, netns, service in programs:
            name = program_name(node, service.name)
            if service.stop_post:
                stop_post[name] = [["ip", "netns", "exec", netns, *cmd] for cmd in service.stop_post]
            wrapper = bindir / f"{name}.sh"
            self.hold_file(name).unlink(missing_ok=True)
            wrapper.write_text(_wrapper(netns, service, self.hold_file(name)))
            wrapper.chmod(0o700)
            parts.append(_program(name, wrapper, self.state.log_file(node, service.name), service))
        if stop_post:
            table = self.dir / "stop-post.json"
            table.write_text(json.dumps(stop_post, indent=1))
            parts += [
                "[eventlistener:pgha-stop-post]",
                f"command={sys.executable} -m pgha.lab.stop_post {table}",
                "events=PROCESS_STATE_EXITED,PROCESS_STATE_STOPPED,PROCESS_STATE_FATAL",
                "autostart=true", "autorestart=true",
                f"stderr_logfile={self.state.logs / 'stop-post.log'}", "",
            ]
        self.conf.write_text("\n".join(parts))

    def hold_file(self, name: str) -> Path:
        return self.dir / "bin" / f"{name}.hold"

    # -- the daemon ---------------------------------------------------------------------------
    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if Path(f"/proc/{pid}").exists() else b""
        return pid if b"supervisord" in cmdline else None

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self) -> None:
        if self.is_running():
            self.rpc.supervisor.reloadConfig()
            return
        self.socket.unlink(missing_ok=True)
        # The umask from the start: supervisord opens its own log before it applies its `umask=`.
        proc = subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf)],
                              capture_output=True, text=True, timeout=30,
                              preexec_fn=lambda: os.umask(PRIVATE_UMASK))
        if proc.returncode != 0:
            raise PghaError(f"supervisord did not start: {proc.stderr.strip() or proc.stdout.strip()}")
        try:
            poll.until("supervisord on its socket", lambda: (
                self.rpc.supervisor.getState()["statename"] == "RUNNING", "not running yet"), 10, interval=0.05)
        except poll.TimedOut as exc:
            raise PghaError(f"supervisord did not answer on its socket within 10 s ({exc.reason})",
                            details=str(self.state.logs / "supervisord.log")) from None

    def shutdown(self, timeout: float = 60, graceful: bool = True) -> None:
        """Stop supervisord; gracefully (every program stopped first) or at once (SIGKILL).

        After a hard stop the programs are orphans: the caller kills them by pid (the lab kills every
        process left in its namespaces).
        """
        pid = self.pid()
        if pid is None:
            return
        if not graceful:
            os.kill(pid, signal.SIGKILL)
            self._wait_gone(pid, 5)
            return
        try:
            self.rpc.supervisor.stopAllProcesses(True)
            self.rpc.supervisor.shutdown()
        except (OSError, xmlrpc.client.Fault):
            os.kill(pid, signal.SIGTERM)
        if not self._wait_gone(pid, timeout):
            os.kill(pid, signal.SIGKILL)

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        try:
            poll.until(f"supervisord (pid {pid}) gone", lambda: (self.pid() != pid, "still running"), timeout,
                       interval=0.05)
        except poll.TimedOut:
            return False
        return True

    @property
    def rpc(self) -> Any:
        transport = SupervisorTransport(None, None, serverurl=f"unix://{self.socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    # -- programs -----------------------------------------------------------------------------
    def info(self, name: str) -> dict[str, Any]:
        try:
            return dict(self.rpc.supervisor.getProcessInfo(name))
        except xmlrpc.client.Fault as exc:
            raise PghaError(f"the lab supervisor knows no program {name}: {exc.faultString}") from None

    def all_info(self) -> list[dict[str, Any]]:
        return [dict(i) for i in self.rpc.supervisor.getAllProcessInfo()]

    def start_program(self, name: str) -> None:
        self.hold_file(name).unlink(missing_ok=True)
        try:
            self.rpc.supervisor.startProcess(name, False)
        except xmlrpc.client.Fault as exc:
            if "ALREADY_STARTED" not in exc.faultString:
                raise PghaError(f"could not start {name}: {exc.faultString}") from None

    def stop_program(self, name: str) -> None:
        try:
            self.rpc.supervisor.stopProcess(name, True)
        except xmlrpc.client.Fault as exc:
            if "NOT_RUNNING" not in exc.faultString:
                raise PghaError(f"could not stop {name}: {exc.faultString}") from None

    def signal_all(self, name: str, sig: str) -> None:
        """Signal every process of the program, as `systemctl kill` signals the whole unit.

        supervisord starts each program in its own process group, so HAProxy's master and workers
        die together (signalling only the master would leave a worker serving).
        """
        pid = self.program_pid(name)
        if pid is None:
            return
        number = getattr(signal, f"SIG{sig.upper().removeprefix('SIG')}")
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, number)
            else:
                os.kill(pid, number)
        except ProcessLookupError:
            pass

    def kill_and_hold(self, name: str, sig: str) -> None:
        """Signal the program and keep it down (systemd: `systemctl kill` then `systemctl stop`).

        supervisord respawns a killed program at once, before any stopProcess can land; the hold
        file makes the respawned wrapper exit without starting the daemon, so a "crashed" Patroni
        can never come back and promote itself on its still-valid leader key. Lifted by start_program.
        """
        self.hold_file(name).touch()
        self.signal_all(name, sig)
        exited_since: list[float] = []

        def held() -> tuple[bool, str]:
            state = self.info(name).get("statename")
            if state in ("STOPPED", "FATAL"):
                return True, str(state)
            if state == "EXITED":  # final unless the restart policy respawns the (held) wrapper
                exited_since[:] = exited_since or [time.monotonic()]
                return time.monotonic() - exited_since[0] > 0.5, "EXITED"
            exited_since.clear()
            if state in ("STARTING", "BACKOFF", "RUNNING"):
                with contextlib.suppress(xmlrpc.client.Fault):  # NOT_RUNNING: it ended meanwhile
                    self.rpc.supervisor.stopProcess(name, True)
            return False, f"still {state}"

        try:
            poll.until(f"{name} held down", held, 15, interval=0.02)
        except poll.TimedOut as exc:
            raise PghaError(f"could not hold {name} down: {exc.reason}") from None

    def program_pid(self, name: str) -> int | None:
        info = self.info(name)
        return int(info["pid"]) if info.get("statename") == "RUNNING" and info.get("pid") else None
