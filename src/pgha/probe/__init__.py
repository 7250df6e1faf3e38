"""Small typed clients of the running stack: etcd's v3 gateway, Patroni's REST API, HAProxy's stats,
PostgreSQL. Every HTTP request and every database connection pgha makes to the stack is opened here —
operations (Patroni's REST) and the drill's writers included."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from pgha.errors import MissingPrerequisite, pgha_command
from pgha.layout import StateLayout
from pgha.secrets import Secrets, load_secrets
from pgha.spec import ClusterSpec


@dataclass(frozen=True)
class Credentials:
    """What the operator's machine presents to the cluster: the CA, pgha's client cert, passwords."""

    ca: str
    cert: str
    key: str
    secrets: Secrets

    @classmethod
    def of(cls, spec: ClusterSpec) -> Credentials:
        state = StateLayout(spec.state_dir)
        if not (state.pki / "ca.crt").exists():
            raise MissingPrerequisite(f"no certificates for cluster {spec.name} in {state.pki}",
                                      hint=f"create them: `{pgha_command('certs')}` (the lab's "
                                           f"`{pgha_command('lab', 'up')}` does)")
        return cls(str(state.pki / "ca.crt"), str(state.pki / "client.crt"), str(state.pki / "client.key"),
                   load_secrets(state))

    def tls(self, with_cert: bool = True) -> ssl.SSLContext:
        """A client TLS context: the cluster CA, and pgha's client certificate unless told not to."""
        ctx = ssl.create_default_context(cafile=self.ca)
        if with_cert:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx
