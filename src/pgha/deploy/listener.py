"""The port check's temporary listener, run on a server by its own python3 (``python3 -c <this file>``).

Arguments: a marker (so that a pid is killed only while it still is one of ours), the node's address,
a lifetime in seconds, then the ports. It binds every free port on the address, forks a child that
accepts (and closes) connections until killed or the lifetime ends, and prints one JSON line:
``{"pid": child, "ports": {port: {"state": "listening" | "in use" | "error", ...}}}``. For a port in use
it names the listening process and its systemd unit, read from /proc (no ss or lsof needed).

Standard library only: this file's text is what runs on the server, where pgha is not installed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import socket
import sys
import time
from typing import Any


def bind(addr: str, ports: list[int]) -> tuple[list[socket.socket], dict[int, dict[str, Any]]]:
    """A listening socket on every free port; the state of each port."""
    socks: list[socket.socket] = []
    out: dict[int, dict[str, Any]] = {}
    for p in ports:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((addr, p))
            s.listen(64)
            socks.append(s)
            out[p] = {"state": "listening"}
        except OSError as e:
            s.close()
            out[p] = {"state": "in use" if e.errno == errno.EADDRINUSE else "error", "error": e.strerror or str(e)}
    return socks, out


def _listening_inodes(addr: str, port: int) -> set[str]:
    """Listening sockets on this port that hold this address: bound to it, or to every address."""
    here = {socket.inet_aton(addr), bytes(4)}
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            w = row.split()
            host, _, hport = w[1].partition(":")
            if w[3] != "0A" or int(hport, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(host)
            if len(raw) == 4:
                raw = raw[::-1]  # /proc shows the IPv4 address as a little-endian word
            if raw in here or raw == bytes(16):
                inodes.add(f"socket:[{w[9]}]")
    return inodes


def owner(addr: str, port: int) -> dict[str, Any]:
    """The process listening on ``addr:port`` (pid, command, systemd unit), or {} if none is visible."""
    inodes = _listening_inodes(addr, port)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if not any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in fds):
                continue
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            unit = ""
            with open(f"/proc/{pid}/cgroup") as f:
                for line in f.read().splitlines():
                    for part in line.split(":", 2)[2].split("/"):
                        if part.endswith(".service"):
                            unit = part
            return {"pid": int(pid), "comm": comm, "unit": unit}
        except OSError:
            continue
    return {}


def serve(socks: list[socket.socket], life: float) -> None:
    """Accept and close connections until ``life`` seconds have passed (or a signal ends the process)."""
    end = time.monotonic() + life
    while time.monotonic() < end:
        ready, _, _ = select.select(socks, [], [], max(0.0, min(1.0, end - time.monotonic())))
        for s in ready:
            with contextlib.suppress(OSError):
                s.accept()[0].close()


def main(argv: list[str]) -> None:
    """``argv``: marker, address, lifetime, ports..."""
    addr, life, ports = argv[1], float(argv[2]), [int(p) for p in argv[3:]]
    socks, out = bind(addr, ports)
    for p, state in out.items():
        if state["state"] == "in use":
            state.update(owner(addr, p))
    pid = 0
    if socks:
        pid = os.fork()
        if pid == 0:  # the child: detached, silent, ends by itself
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            serve(socks, life)
            os._exit(0)
    print(json.dumps({"pid": pid, "ports": out}))


if __name__ == "__main__":
    main(sys.argv[1:])
