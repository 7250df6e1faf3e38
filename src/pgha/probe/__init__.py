"""Small typed clients of the running stack: etcd's v3 gateway, Patroni's REST API, HAProxy's stats,
PostgreSQL. Every HTTP request and every database connection pgha makes to the stack is opened here —
operations (Patroni's REST) and the drill's writers included."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

from pgha.errors import MissingPrerequisite, pgha_command
from pgha.layout import StateLayout
from pgha.secrets import Secrets, load_secrets
from pgha.spec import SUPERUSER, ClusterSpec


@dataclass(frozen=True)
class Credentials:
    """What the operator's machine presents to the cluster: the CA, pgha's client certificate (etcd's
    root), the read-only probes' certificate, passwords."""

    ca: str
    cert: str
    key: str
    secrets: Secrets
    probe_cert: str = ""
    probe_key: str = ""
    app_user: str = "app"

    @classmethod
    def of(cls, spec: ClusterSpec) -> Credentials:
        state = StateLayout(spec.state_dir)
        if not (state.pki / "ca.crt").exists():
            raise MissingPrerequisite(f"no certificates for cluster {spec.name} in {state.pki}",
                                      hint=f"create them: `{pgha_command('certs')}` (the lab's "
                                           f"`{pgha_command('lab', 'up')}` does)")
        pki = state.pki
        return cls(str(pki / "ca.crt"), str(pki / "client.crt"), str(pki / "client.key"), load_secrets(state),
                   str(pki / "probe.crt"), str(pki / "probe.key"), spec.postgresql.app_user)

    def login(self, superuser: bool = False) -> tuple[str, str, str]:
        """(user, password, database): the application role in its own database, or the superuser."""
        if superuser:
            return SUPERUSER, self.secrets.superuser_password, "postgres"
        return self.app_user, self.secrets.app_password, self.app_user

    @property
    def passwords(self) -> dict[str, str]:
        """Every PostgreSQL login pgha's machine uses: user -> password (libpq's passfile)."""
        return dict(self.login(s)[:2] for s in (False, True))

    def tls(self, with_cert: bool = True) -> ssl.SSLContext:
        """A client TLS context: the cluster CA, and pgha's client certificate unless told not to."""
        return self._context(self.cert, self.key) if with_cert else self._context()

    def probe_tls(self) -> ssl.SSLContext:
        """The read-only probes' context: etcd knows its certificate as a user who may only read."""
        return self._context(self.probe_cert, self.probe_key)

    def _context(self, cert: str = "", key: str = "") -> ssl.SSLContext:
        """Built once per certificate and shared (an SSLContext is thread-safe): loading the files is most
        of the cost of a probe, and a snapshot makes a dozen. Built again when the CA file or the
        certificate changed (`pgha certs rotate` under a running drill or status --watch)."""
        cache = self.__dict__.setdefault("_contexts", {})
        stamp = (cert, *(os.stat(p).st_mtime_ns for p in (self.ca, cert) if p))
        if cache.get(cert, (None,))[0] != stamp:
            ctx = ssl.create_default_context(cafile=self.ca)
            if cert:
                ctx.load_cert_chain(cert, key)
            cache[cert] = (stamp, ctx)
        return cache[cert][1]
