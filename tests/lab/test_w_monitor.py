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

from pgha.lab.control import Lab
from pgha.probe import Credentials
from pgha.probe import pg as pg_probe
from pgha.probe.cluster import Prober
from pgha.spec import Node, Role

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


def prove(lab: Lab, alert: str, match: dict[str, str], fault: Callable[[], None], heal: Callable[[], None]) -> None:
    """``fault``: the alert fires in Alertmanager (with these labels) and reaches the webhook; after ``heal``
    it resolves in Alertmanager and the webhook records it resolved."""
    def seen() -> bool:
        return any(all(labels.get(k) == v for k, v in match.items()) for labels in firing(lab).get(alert, []))

    def sent(status: str) -> bool:
        return any(a["status"] == status and a["labels"]["alertname"] == alert
                   and all(a["labels"].get(k) == v for k, v in match.items())
                   for doc in recorded(lab)[before:] for a in doc["alerts"])

    before = len(recorded(lab))
    try:
        fault()
        fired = until(f"{alert} firing", seen, FIRE_WITHIN, lambda: f"Alertmanager has {firing(lab)}")
        until(f"{alert} at the webhook", lambda: sent("firing"), 15, lambda: f"it got {recorded(lab)[before:]}")
    finally:
        heal()
    t1 = time.monotonic()
    until(f"{alert} resolved", lambda: not seen(), RESOLVE_WITHIN, lambda: f"Alertmanager has {firing(lab)}")
    resolved = time.monotonic() - t1
    until(f"{alert} resolved at the webhook", lambda: sent("resolved"), 30, lambda: f"it got {recorded(lab)[before:]}")
    print(f"\nALERT {alert}: firing {fired:.1f} s after the fault, resolved {resolved:.1f} s after the heal")


def roles(lab: Lab) -> tuple[Node, list[Node]]:
    snap = Prober(lab.spec, Credentials.of(lab.spec), lab.transport).snapshot()
    assert snap.leader is not None
    leader = lab.spec.node(snap.leader.name)
    return leader, [n for n in lab.spec.postgres_nodes if n != leader]


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
    prove(lab, "EtcdMemberDown", {"instance": replica.name}, lambda: lab.stop(replica.name, "etcd"),
          lambda: lab.start(replica.name, "etcd"))


def test_haproxy_down(lab: Lab) -> None:
    node = lab.spec.haproxy_nodes[-1]
    prove(lab, "HaproxyDown", {"instance": node.name}, lambda: lab.stop(node.name, "haproxy"),
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

    prove(lab, "ReplicaNotStreaming", {"instance": replica.name}, fault, heal)


def test_no_leader(lab: Lab) -> None:
    leader, replicas = roles(lab)
    order = [*replicas, leader]  # the leader last, so that no replica takes over meanwhile

    def heal() -> None:
        for n in order:
            lab.start(n.name, "patroni")

    def fault() -> None:
        for n in order:
            lab.stop(n.name, "patroni")

    prove(lab, "PatroniNoLeader", {}, fault, heal)
