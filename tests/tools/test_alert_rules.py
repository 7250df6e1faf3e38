"""The alert rules pgha renders, checked by Prometheus's own `promtool`: `check rules` accepts the file, and
`test rules` proves each rule on series: quiet on a healthy cluster, firing once its fault has lasted the
rule's `for`, resolved after the fault heals. Every alerting problem of pgha.problems must have its case
here (a new rule without one fails the test).
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from pgha import spec as spec_mod
from pgha.render.prometheus import alert_values, alerting, render_rules
from pgha.spec import ClusterSpec

Value = Callable[[int], float]
"""A series' value at minute m (promtool's time() is 60*m at minute m)."""


def const(v: float) -> Value:
    return lambda m: v


def clock(m: int) -> float:
    return 60.0 * m


def P(i: int) -> str:
    return f'instance="postgres-0{i}", name="postgresql-0{i}", scope="c"'


def H(i: int) -> str:
    return f'instance="haproxy-0{i}"'


def E(i: int) -> str:
    return f'instance="postgres-0{i}:2379"'


LAG = 1048576
HEALTHY: dict[str, Value] = {
    **{f'up{{job="etcd", {E(i)}}}': const(1) for i in (1, 2, 3)},
    **{f'etcd_server_has_leader{{job="etcd", {E(i)}}}': const(1) for i in (1, 2, 3)},
    **{f'up{{job="patroni", {P(i)}}}': const(1) for i in (1, 2, 3)},
    **{f'patroni_primary{{job="patroni", {P(i)}}}': const(1 if i == 1 else 0) for i in (1, 2, 3)},
    **{f'patroni_replica{{job="patroni", {P(i)}}}': const(0 if i == 1 else 1) for i in (1, 2, 3)},
    **{f'patroni_postgres_streaming{{job="patroni", {P(i)}}}': const(0 if i == 1 else 1) for i in (1, 2, 3)},
    **{f'patroni_sync_standby{{job="patroni", {P(i)}}}': const(1 if i == 2 else 0) for i in (1, 2, 3)},
    **{f'patroni_is_paused{{job="patroni", {P(i)}}}': const(0) for i in (1, 2, 3)},
    **{f'patroni_pending_restart{{job="patroni", {P(i)}}}': const(0) for i in (1, 2, 3)},
    **{f'patroni_dcs_last_seen{{job="patroni", {P(i)}}}': clock for i in (1, 2, 3)},
    f'patroni_xlog_location{{job="patroni", {P(1)}}}': const(5e9),
    **{f'patroni_xlog_received_location{{job="patroni", {P(i)}}}': const(5e9) for i in (2, 3)},
    **{f'up{{job="postgres", instance="postgres-0{i}"}}': const(1) for i in (1, 2, 3)},
    **{f'pg_up{{job="postgres", instance="postgres-0{i}"}}': const(1) for i in (1, 2, 3)},
    **{f'up{{job="haproxy", {H(i)}}}': const(1) for i in (1, 2, 3)},
    **{f'haproxy_backend_active_servers{{job="haproxy", {H(i)}, proxy="postgres_primary"}}': const(1)
       for i in (1, 2, 3)},
    **{f'haproxy_server_status{{job="haproxy", {H(i)}, proxy="postgres_primary", server="postgresql-0{s}", '
       f'state="UP"}}': const(1 if s == 1 else 0) for i in (1, 2, 3) for s in (1, 2, 3)},
    'probe_success{job="vip", instance="vip:5432"}': const(1),
    'probe_ssl_earliest_cert_expiry{job="tls", instance="postgres-01:8008"}': lambda m: 60 * m + 200 * 86400,
}


@dataclass(frozen=True)
class Case:
    alert: str
    fault: dict[str, Value]
    """Series that change while the fault lasts (the others keep their healthy values)."""
    labels: list[dict[str, str]] = field(default_factory=lambda: [{}])
    """The firing alerts' labels besides the rule's own (severity, problem, cluster)."""


CASES = [
    Case("EtcdNoQuorum", {f'up{{job="etcd", {E(i)}}}': const(0) for i in (2, 3)}),
    Case("EtcdMemberDown", {f'up{{job="etcd", {E(2)}}}': const(0)},
         [{"job": "etcd", "instance": "postgres-02:2379"}]),
    Case("PatroniNoLeader", {f'patroni_primary{{job="patroni", {P(1)}}}': const(0)}),
    Case("PatroniManyPrimaries", {f'patroni_primary{{job="patroni", {P(2)}}}': const(1)}),
    Case("PatroniPaused", {f'patroni_is_paused{{job="patroni", {P(i)}}}': const(1) for i in (1, 2, 3)}),
    Case("PatroniNoDcs", {f'patroni_dcs_last_seen{{job="patroni", {P(3)}}}': const(60)},
         [{"job": "patroni", "instance": "postgres-03", "name": "postgresql-03", "scope": "c"}]),
    Case("PatroniPendingRestart", {f'patroni_pending_restart{{job="patroni", {P(2)}}}': const(1)},
         [{"job": "patroni", "instance": "postgres-02", "name": "postgresql-02", "scope": "c"}]),
    Case("ReplicaNotStreaming", {f'patroni_postgres_streaming{{job="patroni", {P(3)}}}': const(0)},
         [{"job": "patroni", "instance": "postgres-03", "name": "postgresql-03", "scope": "c"}]),
    Case("ReplicaLagAboveFailoverLimit", {f'patroni_xlog_location{{job="patroni", {P(1)}}}': const(5e9 + LAG + 1)},
         [{"job": "patroni", "instance": f"postgres-0{i}", "name": f"postgresql-0{i}", "scope": "c"}
          for i in (2, 3)]),
    Case("SyncModeWithoutStandby", {f'patroni_sync_standby{{job="patroni", {P(2)}}}': const(0)}),
    Case("PostgresDown", {'pg_up{job="postgres", instance="postgres-02"}': const(0)},
         [{"job": "postgres", "instance": "postgres-02"}]),
    Case("PatroniDown", {f'up{{job="patroni", {P(1)}}}': const(0)},
         [{"job": "patroni", "instance": "postgres-01", "name": "postgresql-01", "scope": "c"}]),
    Case("HaproxyDown", {f'up{{job="haproxy", {H(3)}}}': const(0)}, [{"job": "haproxy", "instance": "haproxy-03"}]),
    Case("VipNotAnswering", {'probe_success{job="vip", instance="vip:5432"}': const(0)},
         [{"job": "vip", "instance": "vip:5432"}]),
    Case("HaproxyPrimaryNoServer",
         {f'haproxy_backend_active_servers{{job="haproxy", {H(1)}, proxy="postgres_primary"}}': const(0)},
         [{"job": "haproxy", "instance": "haproxy-01", "proxy": "postgres_primary"}]),
    Case("HaproxyPrimaryRoutesToReplica",
         {f'haproxy_server_status{{job="haproxy", {H(2)}, proxy="postgres_primary", server="postgresql-02", '
          'state="UP"}': const(1)},
         [{"job": "haproxy", "instance": "haproxy-02", "proxy": "postgres_primary", "server": "postgresql-02",
           "state": "UP"}]),
    Case("CertificateExpiresSoon",
         {'probe_ssl_earliest_cert_expiry{job="tls", instance="postgres-01:8008"}': lambda m: 60 * m + 10 * 86400},
         [{"job": "tls", "instance": "postgres-01:8008"}]),
    Case("ScrapeTargetDown", {'up{job="postgres", instance="postgres-03"}': const(0)},
         [{"job": "postgres", "instance": "postgres-03"}]),
]


def spec() -> ClusterSpec:
    data = spec_mod.default_data(lab=True, name="c")
    data["dcs"] = {"synchronous_mode": True, "maximum_lag_on_failover": LAG}
    return spec_mod.parse(data, "(test)")


def minutes(duration: str) -> int:
    seconds = int(duration.removesuffix("s")) if duration.endswith("s") else int(duration.removesuffix("h")) * 3600 \
        if duration.endswith("h") else int(duration.removesuffix("m")) * 60
    return math.ceil(seconds / 60)


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (scripts/bootstrap.sh installs prometheus)")
    return path


def expected(rule: dict[str, object], extra: dict[str, str]) -> dict[str, object]:
    labels = {**rule["labels"], **extra}  # type: ignore[dict-item]
    where = f" on {extra['instance']}" if "instance" in extra else ""
    annotations = {"summary": rule["annotations"]["summary"],  # type: ignore[index]
                   "description": rule["annotations"]["summary"] + where + " (`pgha doctor` says why and what "  # type: ignore[index]
                                  "to do)"}
    return {"exp_labels": labels, "exp_annotations": annotations}


def test_rules_check_and_every_rule_proven(tmp_path: Path) -> None:
    tool = promtool()
    sp = spec()
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(render_rules(sp))
    rc = subprocess.run([tool, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60)
    assert rc.returncode == 0, rc.stdout + rc.stderr

    rendered = {r["alert"]: r for r in yaml.safe_load(rules_file.read_text())["groups"][0]["rules"]}
    assert {c.alert for c in CASES} == {p.alert.name for p in alerting(sp) if p.alert}, "a rule without its case"
    assert alert_values(sp)["lag"] == LAG

    tests = []
    for case in CASES:
        rule = rendered[case.alert]
        hold = minutes(str(rule["for"]))
        start, end = 2, 2 + hold + 4
        fire_at, resolved_at, last = start + hold + 2, end + 3, end + 5

        def values(name: str, case: Case = case, start: int = start, end: int = end, last: int = last) -> str:
            fault = case.fault.get(name)
            return " ".join(f"{(fault if fault and start <= m <= end else HEALTHY[name])(m):g}"
                            for m in range(last + 1))

        assert set(case.fault) <= set(HEALTHY), f"{case.alert}: a fault series has no healthy value"
        tests.append({
            "name": case.alert, "interval": "1m",
            "input_series": [{"series": name, "values": values(name)} for name in HEALTHY],
            "alert_rule_test": [
                {"eval_time": f"{start - 1}m", "alertname": case.alert, "exp_alerts": []},
                {"eval_time": f"{fire_at}m", "alertname": case.alert,
                 "exp_alerts": [expected(rule, extra) for extra in case.labels]},
                {"eval_time": f"{resolved_at}m", "alertname": case.alert, "exp_alerts": []},
            ]})
    # Healthy all along: no rule fires.
    tests.append({"name": "healthy", "interval": "1m",
                  "input_series": [{"series": n, "values": " ".join(f"{v(m):g}" for m in range(80))}
                                   for n, v in HEALTHY.items()],
                  "alert_rule_test": [{"eval_time": "79m", "alertname": name, "exp_alerts": []}
                                      for name in rendered]})
    test_file = tmp_path / "rules_test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(rules_file)], "evaluation_interval": "1m",
                                         "tests": tests}, sort_keys=False))
    rc = subprocess.run([tool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120)
    assert rc.returncode == 0, rc.stdout[-6000:] + rc.stderr[-6000:]


def test_a_rule_of_a_setting_that_is_off_is_left_out() -> None:
    data = spec_mod.default_data(lab=True)
    names = {p.alert.name for p in alerting(spec_mod.parse(data, "(test)")) if p.alert}
    assert "SyncModeWithoutStandby" not in names and "PatroniNoLeader" in names
