"""pgha.spec and the spec commands: every rule's exact message, exit code 2, defaults, profiles, init."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgha import spec as spec_mod
from pgha.cli import main
from pgha.errors import SpecError
from pgha.spec import PROFILES, Profile, default_data, dump, load, parse

SPEC = "cluster.yml"
Change = Callable[[dict[str, Any]], None]


def one_line(text: str) -> str:
    """Console output on one line: rich wraps at 80 columns off a terminal (and colours if FORCE_COLOR is set)."""
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", text).split())


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a scratch directory (messages then name ``cluster.yml``), state kept under it too."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(spec_mod, "STATE_ROOT", tmp_path / "state")
    return tmp_path


def write_spec(data: Any, path: str = SPEC) -> Path:
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))
    return Path(path)


def check(capsys: pytest.CaptureFixture[str], path: str = SPEC) -> tuple[int, str]:
    """`pgha spec check --spec PATH`: exit code and stderr on one line."""
    code = main(["spec", "check", "--spec", path])
    return code, one_line(capsys.readouterr().err)


# -- every rule, with its message -------------------------------------------------------------------


def top(**fields: Any) -> Change:
    return lambda d: d.update(fields)


def section(name: str, /, **fields: Any) -> Change:
    return lambda d: d.setdefault(name, {}).update(fields)


def node(i: int, /, **fields: Any) -> Change:
    return lambda d: d["nodes"][i].update(fields)


def keep_nodes(*indexes: int) -> Change:
    def change(d: dict[str, Any]) -> None:
        d["nodes"] = [d["nodes"][i] for i in indexes]
    return change


def drop(key: str) -> Change:
    return lambda d: d.pop(key)


PATH_RULE = ("must be an absolute, normalised path of letters, digits and _+@=,.- "
             "(no '..', '.', '//', trailing '/', spaces, quotes or shell characters)")
IFNAME_RULE = ("not an interface name: 1-15 letters, digits, '_', '.', '-' (not first), "
               "no spaces, '/', ':' or newlines")
WORD_RULE = ("must be 1-64 letters, digits, '_', '.', '-', starting with a letter or digit "
             "(no spaces, quotes or shell characters)")
UNKNOWN = "unknown key (not part of the spec; see `pgha spec schema`)"
NAME_RULE = "String should match pattern '^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$'"
ODD_RULE = "postgres nodes: etcd runs on each and needs an odd number (1, 3, 5) to keep a quorum"

# The default lab spec: haproxy-01..03 are nodes[0..2] (.200-.202), postgres-01..03 nodes[3..5] (.203-.205).
CASES = [
    # unknown keys
    pytest.param(top(colour="red"), f"colour: {UNKNOWN}", id="unknown-top-level-key"),
    pytest.param(section("vip", colour="red"), f"vip.colour: {UNKNOWN}", id="unknown-key-in-section"),
    pytest.param(node(0, colour="red"), f"nodes[0].colour: {UNKNOWN}", id="unknown-key-in-node"),
    pytest.param(node(3, tags={"primary": True}), f"nodes[3].tags.primary: {UNKNOWN}", id="unknown-key-in-tags"),
    pytest.param(top(colour="red", size=3), f"colour: {UNKNOWN} (and 1 more problem(s))", id="two-unknown-keys"),
    # wrong types and values (pydantic's words, then the value given)
    pytest.param(section("vip", prefix="big"),
                 "vip.prefix: Input should be a valid integer, unable to parse string as an integer (got 'big')",
                 id="not-an-integer"),
    pytest.param(section("dcs", ttl=25.5),
                 "dcs.ttl: Input should be a valid integer, got a number with a fractional part (got 25.5)",
                 id="fraction"),
    pytest.param(section("vip", prefix=4), "vip.prefix: Input should be greater than or equal to 8 (got 4)",
                 id="below-minimum"),
    pytest.param(section("vip", nopreempt="maybe"),
                 "vip.nopreempt: Input should be a valid boolean, unable to interpret input (got 'maybe')",
                 id="not-a-boolean"),
    pytest.param(top(nodes="haproxy-01"), "nodes: Input should be a valid tuple (got 'haproxy-01')",
                 id="nodes-not-a-list"),
    pytest.param(top(vip=["10.203.0.210"]), "vip: Input should be a valid dictionary or instance of Vip (got list)",
                 id="section-not-a-mapping"),
    pytest.param(node(0, address="10.203.0.300"),
                 "nodes[0].address: Input is not a valid IPv4 address (got '10.203.0.300')", id="bad-address"),
    pytest.param(node(0, role="database"),
                 "nodes[0].role: Input should be 'postgres', 'haproxy', 'backup' or 'monitor' (got 'database')",
                 id="unknown-role"),
    pytest.param(top(profile="turbo"), "profile: Input should be 'seed' or 'fast' (got 'turbo')",
                 id="unknown-profile"),
    pytest.param(node(0, name="HAProxy_1"), f"nodes[0].name: {NAME_RULE} (got 'HAProxy_1')", id="bad-node-name"),
    pytest.param(node(3, member="-pg1"), f"nodes[3].member: {NAME_RULE} (got '-pg1')", id="bad-member-name"),
    pytest.param(section("cluster", name="my cluster"),
                 "cluster.name: String should match pattern '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' (got 'my cluster')",
                 id="bad-cluster-name"),
    pytest.param(section("cluster", namespace="service"),
                 "cluster.namespace: String should match pattern '^/([A-Za-z0-9_.-]+/)*$' (got 'service')",
                 id="bad-namespace"),
    pytest.param(drop("vip"), "vip: is required", id="missing-vip"),
    # duplicates
    pytest.param(node(4, name="postgres-01"), "nodes[4].name: postgres-01 is used twice (also nodes[3])",
                 id="duplicate-name"),
    pytest.param(node(3, address="10.203.0.200"), "nodes[3].address: 10.203.0.200 is used twice (also nodes[0])",
                 id="duplicate-address"),
    pytest.param(node(5, member="postgresql-01"), "nodes[5].member: postgresql-01 is used twice (also nodes[3])",
                 id="duplicate-member"),
    # topology
    pytest.param(keep_nodes(0, 1, 2, 3, 4), f"nodes: 2 {ODD_RULE}", id="even-postgres-nodes"),
    pytest.param(keep_nodes(0, 1, 2), f"nodes: 0 {ODD_RULE}", id="no-postgres-node"),
    pytest.param(keep_nodes(3, 4, 5), "nodes: no haproxy node: at least one is needed to route clients to the primary",
                 id="no-haproxy-node"),
    # the VIP and VRRP
    pytest.param(node(5, address="10.204.0.205"),
                 "nodes[5].address: 10.204.0.205 is not in the VIP's subnet 10.203.0.0/24", id="node-outside-subnet"),
    pytest.param(section("vip", address="10.204.0.210"),  # the other problem: the bridge .1 is outside too
                 "vip.address: 10.204.0.210/24 is not in the nodes' subnet (nodes[0] is 10.203.0.200) "
                 "(and 1 more problem(s))", id="vip-outside-nodes-subnet"),
    pytest.param(section("vip", address="10.203.0.203"), "vip.address: 10.203.0.203 is also the address of nodes[3]",
                 id="vip-is-a-node-address"),
    pytest.param(section("vip", address="10.203.0.255"),
                 "vip.address: 10.203.0.255 is the network or broadcast address of 10.203.0.0/24",
                 id="vip-is-broadcast"),
    pytest.param(node(2, priority=90), "nodes[2].priority: priority 90 is used twice (also nodes[1]); "
                 "VRRP needs one clear preferred holder", id="duplicate-priority"),
    pytest.param(node(3, priority=70), "nodes[3].priority: only haproxy nodes take a VRRP priority",
                 id="priority-on-postgres-node"),
    # Patroni's timing rules
    pytest.param(section("dcs", ttl=19, loop_wait=5, retry_timeout=5),
                 "dcs.ttl: 19 is below Patroni's floor of 20 (Patroni would silently use 20)", id="ttl-below-20"),
    pytest.param(section("dcs", ttl=25), "dcs: loop_wait + 2*retry_timeout = 30 exceeds ttl 25: a healthy leader "
                 "could lose its lease", id="loop-wait-and-retries-exceed-ttl"),
    pytest.param(section("dcs", retry_timeout=2), "dcs.retry_timeout: 2 is below Patroni's floor of 3",
                 id="retry-timeout-below-3"),
    pytest.param(section("dcs", synchronous_mode_strict=True),
                 "dcs.synchronous_mode_strict: needs synchronous_mode: true", id="strict-without-sync"),
    # ports, paths, lab
    pytest.param(section("ports", restapi=5432), "ports.restapi: 5432 is also ports.postgresql", id="port-used-twice"),
    pytest.param(section("paths", certs="etc/etcd/certs"), f"paths.certs: {PATH_RULE} (got 'etc/etcd/certs')",
                 id="relative-path"),
    # issue 18: values that reach a root-run shell, a unit file, a config line or a path
    pytest.param(section("vip", interface="eth0\nExecStartPre=+/bin/sh -c id"),
                 f"vip.interface: {IFNAME_RULE} (got 'eth0\\nExecStartPre=+/bin/sh -c id')",
                 id="interface-with-a-newline"),
    pytest.param(section("vip", interface="eth0;id"), f"vip.interface: {IFNAME_RULE} (got 'eth0;id')",
                 id="interface-with-a-semicolon"),
    pytest.param(section("vip", interface="an-interface-name"),
                 f"vip.interface: {IFNAME_RULE} (got 'an-interface-name')", id="interface-too-long"),
    pytest.param(section("cluster", etcd_token="$(touch /pwned)"),
                 f"cluster.etcd_token: {WORD_RULE} (got '$(touch /pwned)')", id="token-with-a-command"),
    pytest.param(section("paths", pg_data="/var/lib/postgresql/../../../etc"),
                 f"paths.pg_data: {PATH_RULE} (got '/var/lib/postgresql/../../../etc')", id="path-with-dotdot"),
    pytest.param(section("paths", haproxy_conf="/etc/haproxy cfg"),
                 f"paths.haproxy_conf: {PATH_RULE} (got '/etc/haproxy cfg')", id="path-with-a-space"),
    pytest.param(section("paths", run_dir="/run//pgha/"), f"paths.run_dir: {PATH_RULE} (got '/run//pgha/')",
                 id="path-not-normalised"),
    pytest.param(section("cluster", state_dir="/etc"),
                 "cluster.state_dir: /etc is not below the state root {root} (`pgha lab down` removes the state "
                 "directory; set PGHA_STATE_ROOT to move the root)", id="state-dir-outside-the-root"),
    pytest.param(section("cluster", state_dir="/var/lib/pgha/../../etc"),
                 f"cluster.state_dir: {PATH_RULE} (got '/var/lib/pgha/../../etc')", id="state-dir-with-dotdot"),
    pytest.param(section("watchdog", module="softdog\nExecStartPre=+id"),
                 f"watchdog.module: {WORD_RULE} (got 'softdog\\nExecStartPre=+id')", id="watchdog-module"),
    pytest.param(section("watchdog", device="/dev/watchdog;id"),
                 f"watchdog.device: {PATH_RULE} (got '/dev/watchdog;id')", id="watchdog-device"),
    pytest.param(section("postgresql", bin_dir="/usr/lib/postgresql/15/bin/.."),
                 f"postgresql.bin_dir: {PATH_RULE} (got '/usr/lib/postgresql/15/bin/..')", id="bin-dir"),
    pytest.param(section("postgresql", parameters={"work_mem": "4MB\nshared_preload_libraries = 'x'"}),
                 "postgresql.parameters.work_mem: must be one line without control characters "
                 "(got \"4MB\\nshared_preload_libraries = 'x'\")", id="parameter-with-a-newline"),
    pytest.param(section("lab", bridge_address="10.203.0.204"),
                 "lab.bridge_address: 10.203.0.204 (the machine's address on the lab bridge) is taken by a node or "
                 "the VIP; set lab.bridge_address", id="bridge-address-taken"),
    # PostgreSQL roles
    pytest.param(section("postgresql", app_user="rewind"),
                 "postgresql.app_user: rewind is one of pgha's own roles (postgres, replicator, rewind, pgha_monitor)",
                 id="app-user-reserved"),
    pytest.param(section("postgresql", app_user="app; drop"),
                 "postgresql.app_user: String should match pattern '^[a-z_][a-z0-9_]{0,62}$' (got 'app; drop')",
                 id="app-user-not-an-identifier"),
]


def broken(data_change: Change) -> dict[str, Any]:
    data = default_data(lab=True)
    data_change(data)
    return data


@pytest.mark.parametrize(("change", "expected"), CASES)
def test_spec_error_message(change: Change, expected: str) -> None:
    data = broken(change)
    write_spec(data)
    with pytest.raises(SpecError) as exc:
        load(SPEC)
    assert str(exc.value) == f"{SPEC}: {expected}".replace("{root}", str(spec_mod.STATE_ROOT))
    assert exc.value.exit_code == 2
    with pytest.raises(SpecError) as from_data:
        parse(data, SPEC)
    assert str(from_data.value) == str(exc.value)


CLI_CASES = CASES  # the CLI prints each message verbatim (rich markup escaped)


@pytest.mark.parametrize(("change", "expected"), CLI_CASES)
def test_spec_check_exits_2_with_the_message(change: Change, expected: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    write_spec(broken(change))
    code, err = check(capsys)
    assert code == 2
    assert err.startswith(f"pgha: error: {SPEC}: {expected}".replace("{root}", str(spec_mod.STATE_ROOT)))
    assert "Traceback" not in err


def test_pydantic_errors_come_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    write_spec({**default_data(lab=True), "colour": "red"})
    code, err = check(capsys)
    assert code == 2
    assert err.endswith("hint: fix the field and run again; `pgha spec schema` lists every field")


# -- the file itself ---------------------------------------------------------------------------------


def test_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SpecError) as exc:
        load("nope.yml")
    assert str(exc.value) == "nope.yml: no such file"
    code, err = check(capsys, "nope.yml")
    assert code == 2
    assert err == ("pgha: error: nope.yml: no such file "
                   "hint: create one with `pgha init` (or `pgha init --lab`), or pass --spec FILE")


def test_unreadable_file(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Path("dir.yml").mkdir()  # root reads any file, so a directory is the unreadable spec CI can build
    with pytest.raises(SpecError) as exc:
        load("dir.yml")
    assert str(exc.value) == "dir.yml: cannot read: Is a directory"
    code, err = check(capsys, "dir.yml")
    assert code == 2  # click refuses the directory before pgha reads it
    assert "'dir.yml' is a directory" in err


def test_permission_denied(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    write_spec(default_data(lab=True))
    real_read = Path.read_text

    def read_text(self: Path, *args: Any, **kwargs: Any) -> str:
        if self.name == SPEC:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    code, err = check(capsys)
    assert code == 2
    assert err == f"pgha: error: {SPEC}: cannot read: Permission denied"


def test_invalid_yaml_names_the_line(capsys: pytest.CaptureFixture[str]) -> None:
    Path(SPEC).write_text("vip:\n  address: 10.203.0.210\n  prefix: 24\n interface: eth0\n")
    message = f"{SPEC}: invalid YAML at line 4, column 2: expected <block end>, but found '<block mapping start>'"
    with pytest.raises(SpecError) as exc:
        load(SPEC)
    assert str(exc.value) == message
    code, err = check(capsys)
    assert (code, err) == (2, f"pgha: error: {message}")


def test_tab_in_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    Path(SPEC).write_text("cluster:\n  name: x\n\tnamespace: /service/\n")
    code, err = check(capsys)
    assert (code, err) == (2, f"pgha: error: {SPEC}: invalid YAML at line 3, column 1: "
                              "found character '\\t' that cannot start any token")


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just words\n", "str"), ("42\n", "int")])
def test_top_level_must_be_a_mapping(text: str, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    Path(SPEC).write_text(text)
    with pytest.raises(SpecError) as exc:
        load(SPEC)
    assert str(exc.value) == f"{SPEC}: expected a mapping at the top level, got {kind}"
    code, err = check(capsys)
    assert (code, err) == (2, f"pgha: error: {SPEC}: expected a mapping at the top level, got {kind}")


def test_binary_file_is_a_spec_error() -> None:
    Path(SPEC).write_bytes(b"nodes: \xff\xfe\n")
    with pytest.raises(SpecError):
        load(SPEC)


def test_error_message_is_printed_verbatim(capsys: pytest.CaptureFixture[str]) -> None:
    Path("site[dev]").mkdir()
    code, err = check(capsys, "site[dev]/cluster.yml")
    assert (code, err.split(" hint:")[0]) == (2, "pgha: error: site[dev]/cluster.yml: no such file")


# -- defaults and profiles ---------------------------------------------------------------------------


def test_default_spec_is_the_seed_topology() -> None:
    spec = parse(default_data())
    assert [(n.name, n.role.value, str(n.address)) for n in spec.nodes] == [
        ("haproxy-01", "haproxy", "192.168.0.200"), ("haproxy-02", "haproxy", "192.168.0.201"),
        ("haproxy-03", "haproxy", "192.168.0.202"), ("postgres-01", "postgres", "192.168.0.203"),
        ("postgres-02", "postgres", "192.168.0.204"), ("postgres-03", "postgres", "192.168.0.205"),
        ("backup-01", "backup", "192.168.0.206"), ("monitor-01", "monitor", "192.168.0.207"),
    ]
    assert spec.backup_node is not None and spec.backup_node.name == "backup-01"
    assert spec.monitor_node is not None and spec.monitor_node.name == "monitor-01"
    assert [n.member_name for n in spec.postgres_nodes] == ["postgresql-01", "postgresql-02", "postgresql-03"]
    assert [spec.priority_of(n) for n in spec.haproxy_nodes] == [100, 90, 80]
    assert (str(spec.vip.address), spec.vip.prefix, spec.vip.interface, spec.vip.router_id) == \
        ("192.168.0.210", 24, "enp0s3", 51)
    assert (spec.name, spec.cluster.namespace, spec.profile) == ("postgresql-cluster", "/service/", Profile.SEED)
    assert (spec.dcs.ttl, spec.dcs.loop_wait, spec.dcs.retry_timeout) == (30, 10, 10)


def test_default_lab_spec() -> None:
    spec = parse(default_data(lab=True))
    assert [str(n.address) for n in spec.nodes] == [f"10.203.0.{i}" for i in range(200, 208)]
    assert (spec.monitoring.scrape_interval_s, spec.monitoring.evaluation_interval_s) == (2, 2)
    assert (str(spec.vip.address), spec.vip.interface) == ("10.203.0.210", "eth0")
    assert str(spec.bridge_address) == "10.203.0.1"


def test_default_data_round_trips_through_a_file() -> None:
    data = default_data(lab=True)
    Path(SPEC).write_text(dump(data))
    assert load(SPEC) == parse(data)


def test_state_dir_defaults_under_the_state_root(in_tmp: Path) -> None:
    assert parse(default_data(name="prod")).state_dir == in_tmp / "state" / "prod"
    explicit = {**default_data(), "cluster": {"state_dir": str(in_tmp / "state/a/b")}}
    assert parse(explicit).state_dir == in_tmp / "state/a/b"
    with pytest.raises(SpecError, match=r"cluster.state_dir: .*/state is not below the state root"):
        parse({**default_data(), "cluster": {"state_dir": str(in_tmp / "state")}})


def test_fast_profile_overrides_the_seed_timings() -> None:
    seed = parse(default_data())
    fast = parse(default_data(profile=Profile.FAST))
    assert (fast.dcs.ttl, fast.dcs.loop_wait, fast.dcs.retry_timeout) == (20, 2, 4)
    assert (fast.haproxy.inter_ms, fast.haproxy.fall) == (1000, 2)
    assert (fast.keepalived.interval, fast.keepalived.fall) == (1, 2)
    for section_name, preset in PROFILES[Profile.FAST].items():
        fast_values = getattr(fast, section_name).model_dump()
        assert {k: fast_values[k] for k in preset} == preset
        assert getattr(seed, section_name) != getattr(fast, section_name)
    assert fast.postgresql == seed.postgresql and fast.ports == seed.ports


def test_explicit_values_win_over_the_profile() -> None:
    data = {**default_data(profile=Profile.FAST), "dcs": {"ttl": 40}, "haproxy": {"rise": 5}}
    spec = parse(data)
    assert (spec.dcs.ttl, spec.dcs.loop_wait, spec.dcs.retry_timeout) == (40, 2, 4)
    assert (spec.haproxy.rise, spec.haproxy.inter_ms) == (5, 1000)
    assert spec.keepalived.interval == 1


def test_profile_values_still_meet_the_rules() -> None:
    data = {**default_data(profile=Profile.FAST), "dcs": {"retry_timeout": 10}}
    with pytest.raises(SpecError) as exc:
        parse(data, SPEC)
    assert str(exc.value) == (f"{SPEC}: dcs: loop_wait + 2*retry_timeout = 22 exceeds ttl 20: "
                              "a healthy leader could lose its lease")


# -- pgha init, spec check, spec schema ----------------------------------------------------------------


def test_init_lab_then_check(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--lab", "-o", "lab.yml"]) == 0
    assert "wrote lab.yml (8 nodes, VIP 10.203.0.210)" in one_line(capsys.readouterr().err)
    secrets = in_tmp / "state" / "postgresql-cluster" / "secrets.yml"
    assert secrets.stat().st_mode & 0o777 == 0o600

    code, err = check(capsys, "lab.yml")
    assert code == 0
    assert err == ("ok: cluster postgresql-cluster, 3 postgres + 3 haproxy + 1 backup + 1 monitor nodes, "
                   "VIP 10.203.0.210, profile seed, ttl/loop_wait/retry 30/10/10")


def test_init_options(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["init", "-o", "c.yml", "--name", "prod", "--subnet", "172.16.5.0/24", "--profile", "fast"]
    assert main(args) == 0
    spec = load("c.yml")
    assert (spec.name, str(spec.vip.address), spec.vip.interface) == ("prod", "172.16.5.210", "enp0s3")
    assert (spec.profile, spec.dcs.ttl) == (Profile.FAST, 20)


def test_init_refuses_to_overwrite(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--lab", "-o", SPEC]) == 0
    secrets = (in_tmp / "state" / "postgresql-cluster" / "secrets.yml").read_text()
    Path(SPEC).write_text(Path(SPEC).read_text() + "# my edit\n")
    capsys.readouterr()

    assert main(["init", "--lab", "-o", SPEC]) == 2
    assert one_line(capsys.readouterr().err) == (f"pgha: error: {SPEC} exists "
                                                 "hint: pass --force to overwrite it, or -o another file")
    assert Path(SPEC).read_text().endswith("# my edit\n")

    assert main(["init", "--lab", "-o", SPEC, "--force"]) == 0
    assert "# my edit" not in Path(SPEC).read_text()
    # Re-initialising the spec never rotates the cluster's passwords.
    assert (in_tmp / "state" / "postgresql-cluster" / "secrets.yml").read_text() == secrets


def test_init_never_writes_an_invalid_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "-o", SPEC, "--subnet", "10.0.0.0/28"]) == 2  # the seed's .200-.210 need a /24
    assert one_line(capsys.readouterr().err) == (
        "pgha: error: --subnet 10.0.0.0/28: too small for the seed's last octets (.200-.210) "
        "hint: use a /24 (or larger) subnet")
    assert not Path(SPEC).exists()
    assert main(["init", "-o", SPEC, "--subnet", "foo"]) == 2
    assert "pgha: error: --subnet foo:" in capsys.readouterr().err


def test_spec_schema_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spec", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "nodes" in schema["properties"] and "nodes" in schema["required"]
    assert {"Node", "Vip", "Dcs"} <= set(schema["$defs"])
    assert schema["$defs"]["Node"]["additionalProperties"] is False
