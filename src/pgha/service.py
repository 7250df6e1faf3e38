"""A service as data: rendered to a systemd unit on servers and to a supervisord program in the lab.

One description, two service managers, so the lab runs exactly what a server would (same argv, user,
environment file and restart policy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Restart = Literal["always", "on-failure", "no"]


@dataclass(frozen=True)
class Service:
    """One long-running daemon of a node."""

    name: str
    description: str
    argv: tuple[str, ...]
    user: str = "root"
    group: str = "root"
    env_file: str | None = None
    working_dir: str | None = None
    restart: Restart = "always"
    restart_sec: float = 2.0
    kill_mode: Literal["control-group", "process", "mixed"] = "control-group"
    """``process`` for Patroni: stopping it must let Patroni stop PostgreSQL itself."""
    stop_signal: str = "TERM"
    stop_timeout: int = 30
    reload_signal: str | None = None
    notify: bool = False
    limit_nofile: int = 65536
    after: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    """Extra variables (e.g. HOME) on top of the env file."""
    start_pre: tuple[tuple[str, ...], ...] = ()
    """Commands run as root before the daemon starts, failures ignored (systemd's ``ExecStartPre=-+``);
    servers only: the lab's supervisor has no such hook and never needs one."""
    stop_post: tuple[tuple[str, ...], ...] = ()
    """Commands run (as root, failures ignored) after the daemon ended, however it ended — systemd's
    ExecStopPost. keepalived killed by SIGKILL cannot release the VIP itself: this does."""
