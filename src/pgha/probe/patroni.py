"""Patroni's REST API over TLS verified against the cluster CA; unsafe calls authenticated."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from pgha.probe import Credentials
from pgha.spec import ClusterSpec, Node


@dataclass(frozen=True)
class PatroniMember:
    name: str
    node: str | None
    host: str
    role: str
    state: str
    timeline: int | None
    lag_mb: float | None
    tags: dict[str, Any]
    pending_restart: bool = False

    @property
    def is_leader(self) -> bool:
        return self.role in ("leader", "master", "standby_leader")

    @property
    def is_running(self) -> bool:
        return self.state in ("running", "streaming")


class PatroniApi:
    """One node's REST API."""

    def __init__(self, spec: ClusterSpec, node: Node, creds: Credentials, timeout: float = 3.0) -> None:
        self.spec, self.node, self.creds = spec, node, creds
        self.base = f"https://{node.address}:{spec.ports.restapi}"
        self.timeout = timeout

    def _client(self, timeout: float | None = None) -> httpx.Client:
        auth = (self.creds.secrets.restapi_username, self.creds.secrets.restapi_password)
        return httpx.Client(verify=self.creds.tls(), auth=auth,
                            timeout=timeout or self.timeout)

    _kept: httpx.Client | None = None
    _keep = False

    @contextlib.contextmanager
    def kept_alive(self) -> Iterator[PatroniApi]:
        """Within it, reads share one connection (opened on first use): a look every few tens of
        milliseconds then costs no TLS handshake each."""
        self._keep, self._lock = True, threading.Lock()
        try:
            yield self
        finally:
            self._keep = False
            if self._kept is not None:
                self._kept.close()
                self._kept = None

    def get(self, path: str) -> tuple[int, Any]:
        if self._keep:
            with self._lock:  # one look at a time: a slow one is not overtaken by the next
                self._kept = self._kept or self._client()
                r = self._kept.get(self.base + path)
        else:
            with self._client() as http:
                r = http.get(self.base + path)
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, r.text

    def call(self, method: str, path: str, body: Any = None, timeout: float = 60) -> tuple[int, Any]:
        with self._client(timeout) as http:
            r = http.request(method, self.base + path, json=body)
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, r.text


def parse_members(spec: ClusterSpec, body: dict[str, Any]) -> list[PatroniMember]:
    out = []
    for m in body.get("members", []):
        lag = m.get("lag")
        node = spec.member_of(m.get("name", ""))
        out.append(PatroniMember(
            name=m.get("name", "?"), node=node.name if node else None, host=str(m.get("host", "")),
            role=str(m.get("role", "?")), state=str(m.get("state", "?")),
            timeline=m.get("timeline"),
            lag_mb=round(lag / 1048576, 3) if isinstance(lag, int | float) else None,
            tags=dict(m.get("tags", {})), pending_restart=bool(m.get("pending_restart", False)),
        ))
    return out
