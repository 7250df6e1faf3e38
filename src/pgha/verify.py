"""`pgha verify`: the seed's six checks of section 12, plus the TLS properties, each with what was
expected and what was seen. Works against any reachable cluster described by a spec.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import psycopg

from pgha import poll
from pgha.probe import Credentials
from pgha.probe import etcd as etcd_probe
from pgha.probe import pg as pg_probe
from pgha.probe.bounded import PROBE_TIMEOUT, NoAnswer, gather, launch
from pgha.probe.cluster import Prober
from pgha.probe.snapshot import ClusterSnapshot
from pgha.spec import ClusterSpec, Node
from pgha.transport.base import Transport

READ_BACK_TIMEOUT = 1.0
"""Seconds a replica has to show a row written through the VIP (streaming replicas take milliseconds)."""


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    expected: str
    seen: str


@dataclass(frozen=True)
class VerifyReport:
    checks: tuple[Check, ...]
    seconds: float

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def as_dict(self) -> dict[str, object]:
        return {"passed": self.passed, "seconds": round(self.seconds, 3),
                "checks": [asdict(c) for c in self.checks]}


CHECK_TIMEOUT = PROBE_TIMEOUT + 1.0
"""Seconds every check together may take (they run at once): verify answers in about this long
whatever one node does."""


def _check(name: str, expected: str, outcome: Any) -> Check:
    """A check from what its function returned: (ok, seen), or why it gave no answer."""
    if isinstance(outcome, NoAnswer):
        return Check(name, False, expected, outcome.reason)
    ok, seen = outcome
    return Check(name, ok, expected, seen)


class Verifier:
    def __init__(self, spec: ClusterSpec, creds: Credentials, transport: Transport | None = None,
                 prober: Prober | None = None) -> None:
        self.spec, self.creds, self.transport = spec, creds, transport
        self.prober = prober or Prober(spec, creds, transport)
        self.vip = str(spec.vip.address)
        self.port = spec.ports.postgresql

    def run(self) -> VerifyReport:
        """Every check at once, bounded by :data:`CHECK_TIMEOUT`; a check that did not finish has failed."""
        t0 = time.monotonic()
        n_pg = len(self.spec.postgres_nodes)
        seen = gather({"snapshot": self.prober.snapshot, "vip": self.prober.through_vip,
                       "streaming": self.streaming, "write_read": self.write_read,
                       "plaintext": self.plaintext_refused, "etcd_cert": self.etcd_needs_cert,
                       "verify_full": self.verify_full, "etcd_read_only": self.etcd_read_only}, CHECK_TIMEOUT)
        snap = seen["snapshot"]
        if isinstance(snap, NoAnswer):
            on_snap: dict[str, Any] = dict.fromkeys(("etcd", "patroni", "vip_answers", "primary"), snap)
        else:
            on_snap = {"etcd": self.etcd_health(snap), "patroni": self.patroni(snap),
                       "vip_answers": self.vip_answers(snap),
                       "primary": seen["vip"] if isinstance(seen["vip"], NoAnswer) else
                       snap.lands_on_leader(self.spec, *seen["vip"])}
        checks = [
            _check("1. etcd endpoint health (mTLS)", f"{n_pg}/{n_pg} members healthy", on_snap["etcd"]),
            _check("2. Patroni members", f"1 Leader, {n_pg - 1} Replicas streaming, lag 0, every node answering",
                   on_snap["patroni"]),
            _check("3. VIP answers", f"{self.vip}:{self.port} accepts TCP, held by exactly one HAProxy node",
                   on_snap["vip_answers"]),
            _check("4. SQL through the VIP lands on the primary",
                   "pg_is_in_recovery() = f, inet_server_addr() = the leader's address", on_snap["primary"]),
            _check("5. replication is streaming", f"{n_pg - 1} rows in pg_stat_replication, state streaming",
                   seen["streaming"]),
            _check("6. row written via VIP is read on each replica",
                   f"the row on every replica within {READ_BACK_TIMEOUT:g} s", seen["write_read"]),
            _check("TLS: plaintext PostgreSQL refused", "sslmode=disable rejected by every node", seen["plaintext"]),
            _check("TLS: etcd refuses clients without a certificate", "TLS handshake refused", seen["etcd_cert"]),
            _check("TLS: verify-full through the VIP", "connection with sslmode=verify-full against the CA",
                   seen["verify_full"]),
            _check("etcd authorization: the read-only user cannot write", "auth on; pgha-probe reads the "
                   "cluster's keys, its write is refused", seen["etcd_read_only"]),
        ]
        return VerifyReport(tuple(checks), time.monotonic() - t0)

    # -- the checks ---------------------------------------------------------------------------
    def etcd_health(self, snap: ClusterSnapshot) -> tuple[bool, str]:
        healthy = [m for m in snap.etcd if m.healthy]
        bad = [f"{m.name}: {m.error}" for m in snap.etcd if not m.healthy]
        return snap.etcd_healthy, f"{len(healthy)}/{len(snap.etcd)} healthy" + (
            f"; {'; '.join(bad)}" if bad else f", leader {snap.etcd_leader}")

    def patroni(self, snap: ClusterSnapshot) -> tuple[bool, str]:
        if not snap.members:
            return False, f"no Patroni REST API answers ({snap.patroni_error})"
        silent = [f"{node}: {why}" for node, why in snap.unanswered if "Patroni" in why]
        return snap.healthy(caught_up=True) and not silent, "; ".join([snap.describe_members(), *silent])

    def vip_answers(self, snap: ClusterSnapshot) -> tuple[bool, str]:
        tcp = f"TCP connect failed: {snap.vip_error}" if snap.vip_error else "TCP connect ok"
        if snap.vip_holders is None:
            return snap.vip_answers, f"{tcp} (holder not inspected from here)"
        return snap.vip_answers, f"{tcp}; held by {list(snap.vip_holders) or 'nobody'}"

    def streaming(self) -> tuple[bool, str]:
        # As the superuser straight on each node: through the VIP it is refused (PostgreSQL sees HAProxy's
        # address) and the application role sees no other role's replication. The rows of the primary.
        def on(node: Node) -> list[tuple[Any, ...]] | None:
            with pg_probe.connect(str(node.address), self.port, self.creds, superuser=True) as conn:
                recovery = conn.execute("select pg_is_in_recovery()").fetchone()
                if recovery is None or recovery[0]:
                    return None
                return conn.execute("select host(client_addr), state, sync_state from pg_stat_replication "
                                    "order by 1").fetchall()

        seen = gather({n.name: partial(on, n) for n in self.spec.postgres_nodes}, PROBE_TIMEOUT)
        primaries = [v for v in seen.values() if isinstance(v, list)]
        if len(primaries) != 1:
            return False, f"{len(primaries)} nodes out of recovery (want 1)"
        rows = primaries[0]
        want = len(self.spec.postgres_nodes) - 1
        ok = len(rows) == want and all(r[1] == "streaming" for r in rows)
        return ok, ", ".join(f"{a} {s} ({sync})" for a, s, sync in rows) or "no rows"

    def write_read(self, budget: float = CHECK_TIMEOUT - 0.2) -> tuple[bool, str]:
        """A row written through the VIP, then read on every other PostgreSQL node (asked at once); each
        stage bounded so that the check says which one did not answer within ``budget`` seconds."""
        deadline = time.monotonic() + budget
        marker = f"pgha-verify-{uuid.uuid4().hex[:12]}"

        def write() -> str:
            with pg_probe.connect(self.vip, self.port, self.creds) as conn:
                conn.execute("create table if not exists pgha_verify (id serial primary key, val text, "
                             "at timestamptz default now())")
                row = conn.execute("insert into pgha_verify (val) values (%s) returning host(inet_server_addr())",
                                   (marker,)).fetchone()
                return str(row[0]) if row else ""

        written = gather({"write": write}, max(0.3, deadline - time.monotonic() - READ_BACK_TIMEOUT))["write"]
        if isinstance(written, NoAnswer):
            return False, (f"the write through the VIP: {written.reason} (in synchronous mode a standby that "
                           "does not answer holds every commit)")
        replicas = [n for n in self.spec.postgres_nodes if str(n.address) != written]

        def found(node: Node) -> tuple[bool, str]:
            try:
                rows = pg_probe.query(str(node.address), self.port, self.creds,
                                      "select count(*) from pgha_verify where val = %s", (marker,))
            except psycopg.errors.UndefinedTable:
                rows = []  # the table itself has not been replayed yet
            return rows == [(1,)], "missing"

        wait = min(READ_BACK_TIMEOUT, max(0.1, deadline - time.monotonic()))

        def read_back(node: Node) -> str:
            return poll.until(f"the row on {node.name}", partial(found, node), wait, interval=0.05)

        seen = gather({n.name: partial(read_back, n) for n in replicas}, wait + 0.05)
        launch({"clean": partial(pg_probe.query, self.vip, self.port, self.creds,  # not awaited: nobody reads it
                                 "delete from pgha_verify where val = %s", (marker,))})
        ok = bool(replicas) and not any(isinstance(v, NoAnswer) for v in seen.values())
        return ok, "; ".join(f"{name}: {'found' if not isinstance(v, NoAnswer) else v.reason}"
                             for name, v in seen.items()) or "no replicas"

    def plaintext_refused(self) -> tuple[bool, str]:
        def one(node: Node) -> tuple[bool, str]:
            try:
                pg_probe.query(str(node.address), self.port, self.creds, "select 1", sslmode="disable")
            except psycopg.OperationalError as exc:
                rejected = "pg_hba" in str(exc) or "no encryption" in str(exc)
                return rejected, "rejected (pg_hba)" if rejected else str(exc).strip().splitlines()[-1]
            return False, "ACCEPTED"

        seen = gather({n.name: partial(one, n) for n in self.spec.postgres_nodes}, PROBE_TIMEOUT)
        results = {k: (False, v.reason) if isinstance(v, NoAnswer) else v for k, v in seen.items()}
        return all(ok for ok, _ in results.values()), "; ".join(f"{k}: {why}" for k, (_, why) in results.items())

    def etcd_needs_cert(self) -> tuple[bool, str]:
        seen = gather({n.name: partial(etcd_probe.refuses_without_cert, self.spec, n, self.creds)
                       for n in self.spec.postgres_nodes}, PROBE_TIMEOUT)
        results = {k: (False, v.reason) if isinstance(v, NoAnswer) else v for k, v in seen.items()}
        return all(ok for ok, _ in results.values()), "; ".join(f"{k}: {why}" for k, (_, why) in results.items())

    def etcd_read_only(self) -> tuple[bool, str]:
        return etcd_probe.read_only_enforced(self.spec, self.creds)

    def verify_full(self) -> tuple[bool, str]:
        with pg_probe.connect(self.vip, self.port, self.creds, sslmode="verify-full") as conn:
            row = conn.execute("select ssl, version from pg_stat_ssl where pid = pg_backend_pid()").fetchone()
        ssl_on, version = row if row else (False, None)
        return bool(ssl_on), f"sslmode=verify-full ok, ssl={ssl_on}, protocol={version}"

def verify(spec: ClusterSpec, creds: Credentials, transport: Transport | None = None) -> VerifyReport:
    return Verifier(spec, creds, transport).run()
