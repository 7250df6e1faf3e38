"""`pgha certs rotate`: every leaf certificate re-issued from the cluster CA and put in use on a running
cluster, without restarting an engine that can re-read its files.

How each engine takes a new certificate (found on the lab's real engines, not assumed):

    PostgreSQL   re-reads ssl_cert_file/ssl_key_file/ssl_ca_file on reload (Patroni's reload sends it)
    Patroni      its REST API re-reads restapi.certfile on reload when the certificate's serial changed
                 (Patroni.reload_config -> reload_local_certificate); its etcd client opens each new
                 connection with the files as they are then
    etcd 3.4     re-reads its certificate and key on every new TLS handshake, client and peer ports alike
                 (so a leaf rotation needs no restart); its trusted CA file is read once at start
    HAProxy      holds no leaf; it reads its CA file at start or reload

Files go through the Transport from the one plan builder (:attr:`pgha.plan.NodePlan.tls_files`), so the lab
and servers get the same bytes, owners and modes. Each listener is then asked for the certificate it presents
to a new connection, and the rotation is done only when every one presents the file just written. An
etcd member that still presents its old certificate is restarted, one member at a time, quorum kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

from pgha import ca_rotation, poll
from pgha.errors import PghaError, UsageError, pgha_command
from pgha.layout import StateLayout, etcd_cert_name
from pgha.orchestrate import Orchestrator, Reporter
from pgha.pki import ensure_pki, load_cert, server_cert_name
from pgha.probe import Credentials
from pgha.probe import tls as tls_probe
from pgha.probe.bounded import NoAnswer, gather
from pgha.spec import ClusterSpec, Node
from pgha.target import Target

PICKUP_TIMEOUT = 20.0
"""Seconds for a reloaded engine to present its new certificate before pgha calls it stuck."""


@dataclass(frozen=True)
class Listener:
    """One TLS port of a node and the PKI file whose certificate it must present."""

    node: Node
    port: int
    what: str
    cert_file: str
    """The file stem in the PKI directory (``server-postgres-01``, ``etcd-node1``)."""
    postgres: bool = False


@dataclass(frozen=True)
class Presented:
    """What one listener presented to a new connection: the certificate's serial, or why none."""

    node: str
    port: int
    what: str
    serial: int | None
    error: str | None = None


def listeners(spec: ClusterSpec) -> list[Listener]:
    """Every TLS listener of the cluster: PostgreSQL, Patroni's REST API (HAProxy's checks), etcd's client
    and peer ports, on each PostgreSQL node."""
    p = spec.ports
    out = []
    for n in spec.postgres_nodes:
        server, etcd = server_cert_name(n), etcd_cert_name(spec, n)
        out += [Listener(n, p.postgresql, "PostgreSQL", server, postgres=True),
                Listener(n, p.restapi, "Patroni REST API (HAProxy's checks)", server),
                Listener(n, p.etcd_client, "etcd client", etcd),
                Listener(n, p.etcd_peer, "etcd peer", etcd)]
    return out


def presented(spec: ClusterSpec, state: StateLayout, items: list[Listener]) -> list[Presented]:
    """Each listener's certificate on a fresh handshake, all at once. etcd's ports require a client
    certificate: the operator's on the client port, the member's own on the peer port (CN etcd-peer)."""
    pki = state.pki

    def one(li: Listener) -> Presented:
        cert = ""
        if li.port == spec.ports.etcd_client:
            cert = "client"
        elif li.port == spec.ports.etcd_peer:
            cert = li.cert_file
        ctx = tls_probe.client_context(str(pki / "ca.crt"), *(
            (str(pki / f"{cert}.crt"), str(pki / f"{cert}.key")) if cert else ()))
        try:
            got = tls_probe.presented(str(li.node.address), li.port, ctx, postgres=li.postgres)
        except OSError as exc:  # ssl.SSLError is one
            return Presented(li.node.name, li.port, li.what, None, str(exc) or type(exc).__name__)
        return Presented(li.node.name, li.port, li.what, got.serial_number)

    seen = gather({i: partial(one, li) for i, li in enumerate(items)}, 10)
    return [v if not isinstance(v, NoAnswer) else Presented(items[i].node.name, items[i].port, items[i].what,
                                                           None, str(v)) for i, v in seen.items()]


def expected_serial(state: StateLayout, li: Listener) -> int:
    return load_cert(state.pki / f"{li.cert_file}.crt").serial_number


@dataclass(frozen=True)
class RotationResult:
    """Every listener's serial before and after, the services restarted, the seconds it took."""

    before: tuple[Presented, ...]
    after: tuple[Presented, ...]
    restarted: tuple[str, ...]
    reloaded: tuple[str, ...]
    seconds: float

    def summary(self) -> str:
        changed = sum(1 for a, b in zip(self.before, self.after, strict=True) if a.serial != b.serial)
        how = f"restarted: {', '.join(self.restarted)}" if self.restarted else "no engine restarted"
        return (f"{changed}/{len(self.after)} TLS listeners present a new certificate after {self.seconds:.1f} s "
                f"(reloaded: {', '.join(self.reloaded) or 'nothing'}; {how})")


class CertRotator:
    """Rotates the certificates of one running cluster (lab or servers)."""

    def __init__(self, target: Target, reporter: Reporter | None = None) -> None:
        self.target, self.spec, self.state = target, target.spec, target.state
        self.reporter = reporter or Reporter()
        self.restarted: list[str] = []
        self.reloaded: list[str] = []

    def orch(self) -> Orchestrator:
        """A fresh orchestrator: its probes load the client certificates as they are on disk now."""
        return Orchestrator(self.spec, self.target.transport, self.reporter, Credentials.of(self.spec))

    def require_whole(self, orch: Orchestrator) -> None:
        try:  # one snapshot can miss a busy node's answer: a few seconds to see the cluster whole
            poll.until("a whole cluster", partial(self._whole, orch), 15, interval=0.5)
        except poll.TimedOut as exc:
            raise UsageError(f"the cluster is not whole: {exc.reason}",
                             hint=f"a rotation reloads every node: heal it first "
                                  f"(`{pgha_command('doctor')}`)") from None

    def rotate_leaves(self) -> RotationResult:
        """Every leaf re-issued from the cluster CA and in use; the CA kept."""
        ca_rotation.require_none(self.state)
        return self._rotate([("leaf certificates", False)])

    def rotate_ca(self) -> RotationResult:
        """A new CA in three phases, each recorded (an interrupted rotation resumes at its phase):

        trust-both  every trust file carries the old and the new CA (leaves re-issued from the old one,
                    so Patroni's REST API re-reads its CA file too; etcd restarted, one member at a time,
                    since it reads its CA file only at start; HAProxy reloaded)
        reissue     every leaf re-issued from the new CA (reloads only: everyone trusts both)
        drop-old    the old CA leaves every trust file (leaves re-issued again so Patroni re-reads; etcd
                    restarted one at a time; HAProxy reloaded)
        """
        todo = {None: ["trust-both", "reissue", "drop-old"], "trust-both": ["trust-both", "reissue", "drop-old"],
                "reissue": ["reissue", "drop-old"], "drop-old": ["drop-old"]}[ca_rotation.phase(self.state)]
        return self._rotate([(p, p != "reissue") for p in todo], ca=True)

    def _rotate(self, phases: list[tuple[str, bool]], ca: bool = False) -> RotationResult:
        t0 = time.monotonic()
        orch = self.orch()
        self.require_whole(orch)
        items = listeners(self.spec)
        before = presented(self.spec, self.state, items)
        for name, trust_changed in phases:
            if ca and name == "trust-both" and ca_rotation.phase(self.state) is None:
                with orch.step("a new CA, trusted beside the old one"):
                    ca_rotation.begin(self.spec, self.state)
            with orch.step(f"{name}: re-issue every leaf certificate"):
                ensure_pki(self.spec, self.state, rotate=True)
            orch = self.orch()  # the client certificates and the trust file just changed
            changed = self.push(orch)
            self.reload_patroni(orch, changed)
            if trust_changed:
                for node in self.spec.postgres_nodes:  # etcd reads its CA file at start only
                    with orch.step(f"restart etcd on {node.name} (its CA file)"):
                        self.restart_etcd(orch, node)
            self.etcd_pickup(orch, items)
            self.reload_proxies(orch, changed, "CA file")
            with orch.step("cluster whole"):
                orch.wait("cluster whole", partial(self._whole, orch), 60, "patroni", self.spec.postgres_nodes)
            if ca:
                {"trust-both": ca_rotation.switch, "reissue": ca_rotation.drop_old,
                 "drop-old": ca_rotation.finish}[name](self.state)
        if self.restarted:
            orch.etcd_leader_off()  # a restart may have handed etcd's leadership to the Patroni leader's node
        after = presented(self.spec, self.state, items)
        stale = [p for p, li in zip(after, items, strict=True) if p.serial != expected_serial(self.state, li)]
        if stale:
            raise PghaError("after the rotation some listeners do not present their new certificate: " +
                            "; ".join(f"{p.node}:{p.port} {p.error or 'old serial'}" for p in stale))
        return RotationResult(tuple(before), tuple(after), tuple(self.restarted), tuple(self.reloaded),
                              time.monotonic() - t0)

    @staticmethod
    def _whole(orch: Orchestrator) -> tuple[bool, str]:
        snap = orch.prober.snapshot()
        return snap.whole, snap.describe()

    def push(self, orch: Orchestrator) -> dict[str, list[str]]:
        """Every node's TLS files from its plan, through the Transport; the paths that changed, per node."""
        changed: dict[str, list[str]] = {}
        with orch.step("certificates to every node"):
            for node in self.spec.nodes:
                plan = self.target.plan(node, "existing")
                changed[node.name] = [f.path for f in plan.tls_files if self.target.transport.put_file(node, f)]
        return changed

    def reload_patroni(self, orch: Orchestrator, changed: dict[str, list[str]]) -> None:
        """Patroni's reload (REST API, PostgreSQL's SIGHUP) where files changed; waits for the new serials."""
        nodes = [n for n in self.spec.postgres_nodes if changed.get(n.name)]
        name = "Patroni and PostgreSQL reload their certificates"
        with orch.step(name):
            for node in nodes:
                code, body = orch.prober.api(node, 10).call("POST", "/reload")
                if code not in (200, 202):
                    raise PghaError(f"reload on {node.name} refused by Patroni (HTTP {code}): {body}")
                self.reloaded.append(f"patroni@{node.name}")
            orch.prober.wake_up(tuple(nodes))  # the reload waits for the next HA cycle otherwise (loop_wait)
            want = [li for li in listeners(self.spec) if li.node in nodes and li.what in
                    ("PostgreSQL", "Patroni REST API (HAProxy's checks)")]
            orch.wait(name, lambda: self._new(want), PICKUP_TIMEOUT, "patroni", tuple(nodes))

    def _new(self, items: list[Listener]) -> tuple[bool, str]:
        seen = presented(self.spec, self.state, items)
        old = [f"{p.node}:{p.port}" + (f" ({p.error})" if p.error else "")
               for p, li in zip(seen, items, strict=True) if p.serial != expected_serial(self.state, li)]
        return not old, f"still the old certificate: {', '.join(old)}" if old else "all new"

    def etcd_pickup(self, orch: Orchestrator, items: list[Listener]) -> None:
        """etcd re-reads its files per handshake; a member that does not is restarted, one at a time."""
        name = "etcd presents its new certificates"
        with orch.step(name):
            for node in self.spec.postgres_nodes:
                mine = [li for li in items if li.node == node and li.what.startswith("etcd")]
                try:
                    poll.until(name, partial(self._new, mine), 5, interval=0.5)
                except poll.TimedOut:
                    self.restart_etcd(orch, node)
                    orch.wait(name, partial(self._new, mine), PICKUP_TIMEOUT, "etcd", (node,))

    def restart_etcd(self, orch: Orchestrator, node: Node) -> None:
        """One member restarted, and healthy again before anything else happens (quorum kept)."""
        orch.wait(f"etcd healthy before restarting {node.name}'s member", orch.etcd_healthy, 60, "etcd",
                  self.spec.postgres_nodes)
        self.target.transport.restart(node, "etcd")
        self.restarted.append(f"etcd@{node.name}")
        orch.wait(f"etcd healthy after restarting {node.name}'s member", orch.etcd_healthy, 60, "etcd", (node,))

    def reload_proxies(self, orch: Orchestrator, changed: dict[str, list[str]], what: str) -> None:
        """HAProxy reloaded where its CA file changed, one node at a time, the VIP holder last.

        A reload, not the runtime API: ``set ssl ca-file`` + ``commit ssl ca-file`` succeed on HAProxy 2.6 but
        its checks went on trusting the old CA (committing an unrelated CA left every check passing: tested).
        A reload's new workers count every server UP until their first check (~0.15 s seen in the lab), so the
        VIP holder goes last, once the others route again."""
        holders = set(orch.prober.snapshot().vip_holders or ())
        nodes = sorted((n for n in self.spec.haproxy_nodes if changed.get(n.name)), key=lambda n: n.name in holders)
        if not nodes:
            return
        name = f"HAProxy reloads its {what}"
        with orch.step(name):
            for node in nodes:
                self.target.transport.reload(node, "haproxy")
                self.reloaded.append(f"haproxy@{node.name}")
                orch.wait(name, orch.routes_to_leader, 30, "haproxy", (node,))


def serial_hex(serial: int | None) -> str:
    return f"{serial:x}"[:12] if serial is not None else "-"

