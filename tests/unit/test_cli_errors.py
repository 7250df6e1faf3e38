"""One error path: every pgha command, given bad input, answers with one `pgha: error:` line, an exit
code from the README's table and no traceback — click's own usage errors included.

No root, no daemons: the spec's nodes are on 127.203.13.0/24 (loopback, where nothing listens), so a
command that reaches for the cluster is refused at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from pgha import spec as spec_mod
from pgha.cli import cli, main
from pgha.layout import StateLayout
from pgha.pki import ensure_pki
from pgha.secrets import ensure_secrets

EXIT_CODES = {0, 1, 2, 3, 4, 130}  # the README's table
SUBNET = "127.203.13.0/24"

# {bare}: a valid spec whose cluster has no state yet (no secrets, no certificates);
# {ready}: a valid spec with secrets and certificates, and no cluster running; {missing}: no such file.
CASES: list[tuple[str, int, str]] = [
    ("init --profile slow", 2, "Invalid value for '--profile': 'slow' is not one of 'seed', 'fast'"),
    ("init -o {bare}", 2, "exists"),
    ("init --subnet 10.0.0.0/28 -o {tmp}/new.yml", 2, "--subnet 10.0.0.0/28: too small"),
    ("init -o {tmp}/no/such/dir/c.yml", 1, "c.yml: No such file or directory"),
    ("spec schema extra", 2, "Got unexpected extra argument (extra)"),
    ("spec check --spec {missing}", 2, "missing.yml: no such file"),
    ("spec check --spec {tmp}", 2, "Invalid value for '--spec'"),
    ("certs --spec {missing}", 2, "no such file"),
    ("certs check --spec {bare} --format xml", 2, "Invalid value for '--format': 'xml' is not one of"),
    ("certs check --spec {missing}", 2, "no such file"),
    ("render --spec {missing}", 2, "no such file"),
    ("render --spec {bare} --out {bare}", 2, "Invalid value for '--out'"),
    ("lab", 0, ""),  # a group alone: its help
    ("lab up --spec {missing}", 2, "no such file"),
    ("lab up --format xml", 2, "Invalid value for '--format'"),
    ("lab down --spec {missing}", 2, "no such file"),
    ("lab down --keep", 2, "No such option '--keep'"),
    ("lab status --spec {bare}", 2, "no lab is running for cluster pgha-unit-cli"),
    ("lab logs postgres-09 --spec {bare}", 2, "no node named 'postgres-09' in the spec"),
    ("lab logs postgres-01 -n many --spec {bare}", 2, "'many' is not a valid integer"),
    ("lab kill postgres-01 patroni --spec {bare}", 2, "no lab is running"),
    ("lab kill postgres-01 pgbouncer --spec {bare}", 2, "'pgbouncer' is not one of 'etcd', 'patroni'"),
    ("lab kill postgres-01", 2, "Missing argument"),
    ("lab kill postgres-01 patroni --signal NAP --spec {bare}", 2, "Invalid value for '--signal': NAP is not a "
                                                                  "signal name"),
    ("lab stop postgres-01 etcd --spec {bare}", 2, "no lab is running"),
    ("lab start postgres-01 --spec {bare}", 2, "no lab is running"),
    ("lab crash postgres-01 --spec {bare}", 2, "no lab is running"),
    ("lab crash --spec {bare}", 2, "Missing argument 'NODE'"),
    ("lab isolate haproxy-01 --spec {bare}", 2, "no lab is running"),
    ("lab heal haproxy-01 --spec {bare}", 2, "no lab is running"),
    ("verify --spec {bare}", 4, "no certificates for cluster pgha-unit-cli"),
    ("verify --spec {missing}", 2, "no such file"),
    ("dsn --node postgres-09 --spec {bare}", 2, "no node named 'postgres-09'"),
    ("dsn --spec {bare}", 4, "no certificates"),
    ("psql --node postgres-09 --spec {bare}", 2, "no node named 'postgres-09'"),
    ("psql --spec {bare} -- -c select", 4, "no certificates"),
    ("logs postgres-01 --spec {bare}", 2, "no lab is running"),
    ("logs --spec {bare}", 2, "Missing argument 'NODE'"),
    ("logs postgres-01 -n 0 --spec {bare}", 2, "0 is not in the range x>=1"),
    ("status --spec {bare}", 4, "no certificates"),
    ("backup --spec {bare}", 2, "no lab is running"),
    ("backup --type huge --spec {bare}", 2, "Invalid value for '--type': 'huge' is not one of 'full', 'diff'"),
    ("backup list --spec {bare}", 2, "no lab is running"),
    ("backup check --spec {bare}", 2, "no lab is running"),
    ("restore --into x --spec {bare}", 2, "name one recovery target: --time TS, --lsn LSN or --latest"),
    ("restore --time yesterday --into x --spec {bare}", 2, "--time 'yesterday' is not an ISO 8601 time"),
    ("restore --lsn 12 --into x --spec {bare}", 2, "--lsn '12' is not an LSN"),
    ("restore --latest --spec {bare}", 2, "an in-place restore of the whole cluster is not available yet"),
    ("status --watch soon --spec {bare}", 2, "'soon' is not a valid float"),
    ("status --watch 0 --spec {bare}", 2, "0 is not in the range x>=0.1"),
    ("switchover --spec {ready}", 2, "switch the primary over to the best replica: confirm on a terminal, "
                                    "or pass --force"),
    ("switchover --candidate postgres-09 --force --spec {ready}", 2, "no node named 'postgres-09'"),
    ("switchover --candidate haproxy-01 --force --spec {ready}", 2, "haproxy-01 is not a PostgreSQL node"),
    ("failover --spec {ready}", 2, "Missing option '--candidate'"),
    ("failover --candidate postgres-09 --force --spec {ready}", 2, "no node named 'postgres-09'"),
    ("etcd move-leader --spec {ready}", 2, "move etcd's leadership: confirm on a terminal, or pass --force"),
    ("etcd move-leader --to postgres-09 --force --spec {ready}", 2, "no node named 'postgres-09'"),
    ("etcd move-leader --to haproxy-01 --force --spec {ready}", 2, "haproxy-01 is not a PostgreSQL node"),
    ("pause --spec {ready}", 2, "pause automatic failover: confirm on a terminal, or pass --force"),
    ("pause --force --spec {ready}", 1, "no Patroni REST API answers"),
    ("resume --spec {ready}", 2, "confirm on a terminal"),
    ("resume --force --spec {missing}", 2, "no such file"),
    ("restart --force --spec {ready}", 2, "name a NODE or pass --all"),
    ("restart postgres-09 --force --spec {ready}", 2, "no node named 'postgres-09'"),
    ("restart --all --spec {ready}", 2, "restart PostgreSQL on postgres-01, postgres-02, postgres-03: confirm"),
    ("restart --rolling postgres-01 --force --spec {ready}", 2, "--rolling restarts every node in its own order"),
    ("restart --rolling --spec {ready}", 2, "restart PostgreSQL on every node, one at a time, with a switchover: "
                                           "confirm on a terminal"),
    ("reload --spec {ready}", 2, "confirm on a terminal"),
    ("reload --force --spec {ready}", 1, "https://127.203.13.203:8008/reload: ConnectError"),
    ("reinit postgres-09 --force --spec {ready}", 2, "no node named 'postgres-09'"),
    ("reinit postgres-02 --spec {ready}", 2, "wipe and rebuild postgres-02: confirm on a terminal"),
    ("config show --spec {ready}", 1, "no Patroni REST API answers"),
    ("config show --format xml --spec {ready}", 2, "Invalid value for '--format'"),
    ("config set ttl --spec {ready}", 2, "'ttl' is not KEY=VALUE"),
    ("config set --spec {ready}", 2, "Missing argument 'ASSIGNMENTS...'"),
    ("config set ttl=20 --spec {ready}", 2, "change the cluster's configuration: ttl=20: confirm on a terminal"),
    ("config edit --spec {missing}", 2, "no such file"),
    ("sync maybe --spec {ready}", 2, "'maybe' is not one of 'on', 'off'"),
    ("sync on --spec {ready}", 2, "turn synchronous replication on: confirm on a terminal"),
    ("sync on --force --spec {ready}", 1, "no Patroni REST API answers"),
    ("lag --spec {ready}", 1, "the cluster has no leader right now"),
    ("history --spec {ready}", 1, "no Patroni REST API answers"),
    ("metrics postgres-09 --spec {ready}", 2, "no node named 'postgres-09'"),
    ("metrics haproxy-01 --spec {ready}", 2, "haproxy-01 is not a PostgreSQL node"),
    ("metrics postgres-01 --spec {ready}", 1, "https://127.203.13.203:8008/metrics: ConnectError"),
    ("ctl --spec {bare} -- list", 4, "no generated secrets"),
    ("reset --spec {ready}", 2, "no lab is running"),
    ("certs rotate --spec {ready}", 2, "no lab is running"),
    ("etcd replace postgres-09 --force --spec {ready}", 2, "no node named 'postgres-09'"),
    ("etcd replace postgres-01 --spec {ready}", 2, "no lab is running"),
    ("drill primary-nap --spec {ready}", 2, "Invalid value for 'SCENARIO': 'primary-nap' is not one of"),
    ("drill primary-crash --repeat 0 --spec {ready}", 2, "0 is not in the range 1<=x<=100"),
    ("drill primary-crash --spec {ready}", 2, "no lab is running"),
    ("drill chaos --duration 0 --spec {ready}", 2, "duration '0' is zero"),
    ("drill chaos --duration soon --spec {ready}", 2, "duration 'soon' is not understood"),
    ("drill chaos --faults freeze,power-outage --spec {ready}", 2, "unknown fault power-outage (known: power-cut"),
    ("drill chaos --overlap --faults power-cut,etcd-quorum-loss --spec {ready}", 2, "quorum lost by design"),
    ("drill chaos --replay {missing}", 2, "not a chaos report to replay"),
    ("drill chaos --spec {ready}", 2, "no lab is running"),
    ("doctor --spec {ready}", 2, "no lab is running"),
    ("doctor --spec {missing}", 2, "no such file"),
    ("deploy --spec {bare}", 2, "the spec has no `deploy:` section"),
    ("deploy --limit", 2, "Option '--limit' requires an argument"),
    ("bundle build --spec {bare}", 2, "the spec has no `deploy:` section"),
    ("bundle build --spec {missing}", 2, "no such file"),
    ("nosuch", 2, "No such command 'nosuch'"),
]


def _spec_file(path: Path, state: Path) -> str:
    data = spec_mod.default_data(lab=True, name="pgha-unit-cli", subnet=SUBNET)
    data["cluster"]["state_dir"] = str(state)
    path.write_text(spec_mod.dump(data))
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as mp:  # the specs' state directories must lie below the state root
        mp.setattr(spec_mod, "STATE_ROOT", tmp)
        mp.setenv("PGHA_STATE_ROOT", str(tmp))
        ready = _spec_file(tmp / "ready.yml", tmp / "ready-state")
        spec = spec_mod.load(ready)
        ensure_pki(spec, StateLayout(spec.state_dir))
        ensure_secrets(StateLayout(spec.state_dir))
        yield {"bare": _spec_file(tmp / "bare.yml", tmp / "bare-state"), "ready": ready,
               "missing": str(tmp / "missing.yml"), "tmp": str(tmp)}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, re.sub(r"\x1b\[[0-9;]*m", "", captured.err)


@pytest.mark.parametrize(("line", "code", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line(line: str, code: int, message: str, files: dict[str, str],
                                     capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(files["tmp"])  # no ./cluster.yml here: the default spec is missing too
    got, out, err = run(line.format(**files).split(), capsys)
    assert got == code and got in EXIT_CODES, err
    assert "Traceback" not in out + err and "internal error" not in err
    if code == 0:
        assert "Usage: pgha lab" in out
        return
    errors = [x for x in err.splitlines() if x.startswith("pgha: error: ")]
    assert len(errors) == 1, err  # the message is one line, never wrapped
    assert message in errors[0], err
    assert "Usage:" not in err  # click's own format never shows


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        if command.hidden:  # reached under other names (`drill SCENARIO`), covered by their cases
            continue
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


def test_every_command_is_driven_with_bad_input() -> None:
    covered = {tuple(line.split()[:n]) for line, code, _ in CASES if code for n in (1, 2)}
    missing = [" ".join(c) for c in _commands(cli) if c not in covered]
    assert not missing, f"commands without a bad-input case: {missing}"


def test_an_unexpected_exception_is_one_line_too(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    def boom(*_: object) -> None:
        raise RuntimeError("something pgha did not foresee")

    monkeypatch.setattr("pgha.cli.common.load_spec", boom)
    monkeypatch.setattr("pgha.cli.spec_cmds.load_spec", boom)
    code, _, err = run(["spec", "check"], capsys)
    assert code == 1
    assert err.splitlines()[0] == "pgha: error: internal error: RuntimeError: something pgha did not foresee"
    assert "Traceback" not in err and "PGHA_DEBUG=1" in err

    monkeypatch.setattr("pgha.cli.spec_cmds.load_spec", lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    code, _, err = run(["spec", "check"], capsys)
    assert (code, err.strip()) == (130, "pgha: error: interrupted")


def test_a_question_answered_no_changes_nothing(files: dict[str, str], capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the command asks; "no" ends it (exit 130) before the cluster is touched."""
    asked: list[str] = []
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("click.confirm", lambda text, **_: asked.append(text) or False)
    monkeypatch.setattr("pgha.ops.Operations.set_pause", lambda *_: pytest.fail("paused without consent"))
    code, _, err = run(["pause", "--spec", files["ready"]], capsys)
    assert (code, asked) == (130, ["pause automatic failover?"])
    assert err.strip() == "pgha: error: not confirmed: nothing was changed"


# Commands that change the cluster: the README's rule (ask on a terminal, refuse without one, --force
# skips the question), through one helper.
CHANGES_CLUSTER = ("switchover", "failover", "pause", "resume", "restart", "reload", "reinit", "config set",
                   "config edit", "sync", "reset", "etcd move-leader")


def test_every_command_that_changes_the_cluster_takes_force() -> None:
    for path in CHANGES_CLUSTER:
        command: click.Command = cli
        for word in path.split():
            assert isinstance(command, click.Group)
            command = command.commands[word]
        force = [p for p in command.params if p.name == "force"]
        assert force and force[0].help == "Do not ask for confirmation.", path


def test_hints_name_the_spec_file_when_it_is_not_the_default(files: dict[str, str], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pgha command a hint or a fix prints comes from one helper: copied as it is, it acts on the same
    spec (`--spec FILE` unless the spec is ./cluster.yml)."""
    code, _, err = run(["lab", "status", "--spec", files["bare"]], capsys)
    assert code == 2 and f"hint: start it: pgha lab up --spec {files['bare']}" in err
    monkeypatch.chdir(tmp_path)
    Path("cluster.yml").write_text(Path(files["bare"]).read_text())
    for argv in (["lab", "status"], ["lab", "status", "--spec", "cluster.yml"]):
        code, _, err = run(argv, capsys)
        assert code == 2 and err.splitlines()[-1] == "hint: start it: pgha lab up", argv

    from pgha.errors import pgha_command, use_spec_file

    try:
        use_spec_file("my cluster.yml")
        assert pgha_command("reinit", "postgres-02") == "pgha reinit postgres-02 --spec 'my cluster.yml'"
    finally:
        use_spec_file(None)
    assert pgha_command("reinit", "postgres-02") == "pgha reinit postgres-02"
