"""The monitor node on the lab: every scrape target up over TLS on a healthy cluster, and each alert proven
on a real fault — injected, seen firing in Alertmanager within 60 s (the lab scrapes and evaluates every
2 s), recorded by the webhook receiver, then resolved once healed. The seconds each took are printed
(README's alert table)."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pgha.files import FileEntry
from pgha.lab.control import Lab
from pgha.probe import Credentials
from pgha.probe import pg as pg_probe
from pgha.probe.cluster import Prober
from pgha.spec import Node, Role
from tests.lab.roles import roles

pytestmark = pytest.mark.lab

FIRE_WITHIN = RESOLVE_WITHIN = 60.0


def monitor(lab: Lab) -> Node:
    return lab.spec.nodes_of(Role.MONITOR)[0]


def api(lab: Lab, port: int, path: str) -> Any:
    node = monitor(lab)
    tls = ssl.create_default_context(cafile=str(lab.state.pki / "ca.crt"))
    r = httpx.get(f"https://{node.address}:{port}{path}", verify=tls, timeout=5)
    r.raise_for_status()
    return r.json()


def firing(lab: Lab) -> dict[str, list[dict[str, str]]]:
    """Alertmanager's active alerts: alertname -> the labels of each."""
    out: dict[str, list[dict[str, str]]] = {}
    for a in api(lab, lab.spec.ports.alertmanager, "/api/v2/alerts?active=true&silenced=false&inhibited=false"):
        if a["status"]["state"] == "active":
            out.setdefault(a["labels"]["alertname"], []).append(a["labels"])
    return out


def recorded(lab: Lab) -> list[dict[str, Any]]:
    """What the webhook receiver got, oldest first (Alertmanager's webhook documents)."""
    raw = lab.transport.read_file(monitor(lab), lab.target.layout(monitor(lab)).webhook_log) or b""
    return [json.loads(line) for line in raw.decode().splitlines() if line.strip()]


def until(what: str, check: Callable[[], bool], timeout: float, describe: Callable[[], str]) -> float:
    """Seconds until ``check`` held; fails with what was seen after ``timeout``."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"{what}: not within {timeout:.0f} s; {describe()}")
        time.sleep(0.5)
    return time.monotonic() - t0


Expected = tuple[str, dict[str, str]]
"""An alert's name and labels it must carry (a subset)."""


def prove(lab: Lab, alerts: list[Expected], fault: Callable[[], object], heal: Callable[[], object]) -> None:
    """``fault``: each alert fires in Alertmanager (with its labels) and reaches the webhook; after ``heal``
    each resolves in Alertmanager and the webhook records it resolved. Prints the seconds each took."""
    def matches(labels: dict[str, str], want: Expected) -> bool:
        return labels.get("alertname") == want[0] and all(labels.get(k) == v for k, v in want[1].items())

    def seen(want: Expected) -> bool:
        return any(matches(labels, want) for labels in firing(lab).get(want[0], []))

    def sent(want: Expected, status: str) -> bool:
        return any(a["status"] == status and matches(a["labels"], want)
                   for doc in recorded(lab)[before:] for a in doc["alerts"])

    before = len(recorded(lab))
    fired: dict[str, float] = {}
    t0 = time.monotonic()
    try:
        fault()
        for want in alerts:
            until(f"{want[0]} firing", lambda w=want: seen(w), FIRE_WITHIN - (time.monotonic() - t0),  # type: ignore[misc]
                  lambda: f"Alertmanager has {firing(lab)}")
            fired[want[0]] = time.monotonic() - t0
        for want in alerts:
            until(f"{want[0]} at the webhook", lambda w=want: sent(w, "firing"), 15,  # type: ignore[misc]
                  lambda: f"it got {recorded(lab)[before:]}")
    finally:
        heal()
    t1 = time.monotonic()
    for want in alerts:
        until(f"{want[0]} resolved", lambda w=want: not seen(w), RESOLVE_WITHIN - (time.monotonic() - t1),  # type: ignore[misc]
              lambda: f"Alertmanager has {firing(lab)}")
        resolved = time.monotonic() - t1
        until(f"{want[0]} resolved at the webhook", lambda w=want: sent(w, "resolved"), 30,  # type: ignore[misc]
              lambda: f"it got {recorded(lab)[before:]}")
        print(f"\nALERT {want[0]}: firing {fired[want[0]]:.1f} s after the fault, resolved {resolved:.1f} s "
              "after the heal")


def test_every_target_is_up_and_nothing_fires_on_a_healthy_lab(lab: Lab) -> None:
    def targets() -> list[dict[str, Any]]:
        return list(api(lab, lab.spec.ports.prometheus, "/api/v1/targets")["data"]["activeTargets"])

    def all_up() -> bool:
        return all(t["health"] == "up" for t in targets())

    until("every target up", all_up, 60,
          lambda: "; ".join(f"{t['labels']['job']} {t['labels']['instance']}: {t['health']} {t['lastError']}"
                            for t in targets() if t["health"] != "up"))
    jobs = {t["labels"]["job"] for t in targets()}
    assert jobs == {"patroni", "etcd", "postgres", "haproxy", "prometheus", "alertmanager", "vip", "tls"}
    assert len(targets()) == 3 * 3 + 3 + 2 + 1 + 3 * 3 + 2  # patroni/etcd/postgres, haproxy, self, vip, tls
    until("no alert firing", lambda: not firing(lab), 60, lambda: f"Alertmanager has {firing(lab)}")


def test_etcd_member_down(lab: Lab) -> None:
    _, (replica, _) = roles(lab)
    prove(lab, [("EtcdMemberDown", {"instance": replica.name})], lambda: lab.stop(replica.name, "etcd"),
          lambda: lab.start(replica.name, "etcd"))


def test_haproxy_down(lab: Lab) -> None:
    node = lab.spec.haproxy_nodes[-1]
    prove(lab, [("HaproxyDown", {"instance": node.name})], lambda: lab.stop(node.name, "haproxy"),
          lambda: lab.start(node.name, "haproxy"))


def test_replica_not_streaming(lab: Lab) -> None:
    leader, (replica, _) = roles(lab)
    hba = f"{lab.target.layout(leader).pg_data}/pg_hba.conf"
    original = lab.transport.read_file(leader, hba)
    assert original is not None
    creds = Credentials.of(lab.spec)
    host, port = str(leader.address), lab.spec.ports.postgresql

    def heal() -> None:
        with open(hba, "wb") as fh:
            fh.write(original)
        pg_probe.query(host, port, creds, "select pg_reload_conf()", superuser=True)

    def fault() -> None:
        broken = b"\n".join(line for line in original.splitlines()
                            if not (b"replication" in line and str(replica.address).encode() in line))
        with open(hba, "wb") as fh:  # the file Patroni rendered, edited by hand (as doctor's test does)
            fh.write(broken + b"\n")
        pg_probe.query(host, port, creds, "select pg_reload_conf()", superuser=True)
        pg_probe.query(host, port, creds, "select pg_terminate_backend(pid) from pg_stat_replication "
                                          "where host(client_addr) = %s", (str(replica.address),), superuser=True)

    prove(lab, [("ReplicaNotStreaming", {"instance": replica.name})], fault, heal)


def test_no_leader(lab: Lab) -> None:
    leader, replicas = roles(lab)
    order = [*replicas, leader]  # the leader last, so that no replica takes over meanwhile

    def heal() -> None:
        for n in order:
            lab.start(n.name, "patroni")

    def fault() -> None:
        for n in order:
            lab.stop(n.name, "patroni")

    prove(lab, [("PatroniNoLeader", {}), *(("PatroniDown", {"instance": n.name}) for n in order)], fault, heal)


def test_patroni_and_postgresql_down_on_a_replica(lab: Lab) -> None:
    _, (replica, _) = roles(lab)
    prove(lab, [("PatroniDown", {"instance": replica.name}), ("PostgresDown", {"instance": replica.name})],
          lambda: lab.stop(replica.name, "patroni"), lambda: lab.start(replica.name, "patroni"))


def test_vip_not_answering(lab: Lab) -> None:
    nodes = lab.spec.haproxy_nodes

    def fault() -> None:
        for n in nodes:
            lab.stop(n.name, "keepalived")  # each stop releases the VIP (pgha's stop-post)

    def heal() -> None:
        for n in nodes:
            lab.start(n.name, "keepalived")

    prove(lab, [("VipNotAnswering", {})], fault, heal)


def test_haproxy_routing_the_primary_port_to_no_server(lab: Lab) -> None:
    snap = Prober(lab.spec, Credentials.of(lab.spec), lab.transport).snapshot()
    node = next(n for n in lab.spec.haproxy_nodes if n.name not in (snap.vip_holders or ()))
    ca = lab.target.layout(node).haproxy_ca
    original = lab.transport.read_file(node, ca)
    leader, _ = roles(lab)
    wrong = lab.transport.read_file(leader, lab.target.layout(leader).server_crt)  # not the cluster CA
    assert original is not None and wrong is not None and wrong != original

    def with_ca(pem: bytes) -> Callable[[], None]:
        def apply() -> None:
            lab.transport.put_file(node, FileEntry(ca, pem))
            lab.stop(node.name, "haproxy")
            lab.start(node.name, "haproxy")
        return apply

    prove(lab, [("HaproxyPrimaryNoServer", {"instance": node.name})], with_ca(wrong), with_ca(original))
