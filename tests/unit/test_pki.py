"""pgha.pki: the CA and leaf certificates, checked with `cryptography` and a real TLS handshake."""

from __future__ import annotations

import dataclasses
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from pgha import pki
from pgha.errors import PghaError
from pgha.layout import StateLayout
from pgha.spec import ClusterSpec, default_data, parse

VIP = "10.203.0.210"
PG_NODES = [(f"postgres-0{i}", f"postgresql-0{i}", f"10.203.0.{202 + i}") for i in (1, 2, 3)]
CLIENTS = ["patroni", "client", "probe"]
LEAVES = [*(f"etcd-node{i}" for i in (1, 2, 3)), *(f"server-{n}" for n, _, _ in PG_NODES), "server-backup-01",
          "server-monitor-01", *CLIENTS]
ALL_FILES = {f"{stem}.{ext}" for stem in ["ca", *LEAVES] for ext in ("crt", "key")}


@pytest.fixture
def spec() -> ClusterSpec:
    return parse(default_data(lab=True))


@pytest.fixture
def state(tmp_path: Path) -> StateLayout:
    return StateLayout(tmp_path / "state")


@pytest.fixture
def issued(spec: ClusterSpec, state: StateLayout) -> pki.PkiReport:
    return pki.ensure_pki(spec, state)


def cert(state: StateLayout, stem: str) -> x509.Certificate:
    return pki.load_cert(state.pki / f"{stem}.crt")


def ca_pair(state: StateLayout) -> tuple[x509.Certificate, Any]:
    key = serialization.load_pem_private_key((state.pki / "ca.key").read_bytes(), password=None)
    return cert(state, "ca"), key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def snapshot(state: StateLayout) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in state.pki.iterdir()}


def ext(c: x509.Certificate, kind: type) -> Any:
    return c.extensions.get_extension_for_class(kind)


def status(spec: ClusterSpec, state: StateLayout, name: str, **kw: Any) -> pki.CertStatus:
    return next(s for s in pki.check_pki(spec, state, **kw) if s.name == name)


def replace_leaf(state: StateLayout, exp: pki.ExpectedCert, ca: x509.Certificate, ca_key: Any,
                 **kw: Any) -> None:
    """Overwrite a leaf with one crafted by the internal issuer (fewer SANs, short validity, other CA)."""
    crt, key = pki.cert_paths(state, exp.name)
    pki._write_pair(crt, key, *pki._issue_leaf(exp, ca, ca_key, **kw))


def expected(spec: ClusterSpec, name: str) -> pki.ExpectedCert:
    return next(e for e in pki.expected_certs(spec) if e.name == name)


# -- creation ----------------------------------------------------------------------------------------


def test_creates_every_file_with_private_modes(state: StateLayout, issued: pki.PkiReport) -> None:
    assert {p.name for p in state.pki.iterdir()} == ALL_FILES  # and no temporary file left behind
    assert mode(state.pki) == 0o700
    for name in ALL_FILES:
        assert mode(state.pki / name) == (0o600 if name.endswith(".key") else 0o644), name
    assert {a.path.name for a in issued.actions} == ALL_FILES
    assert all(a.action is pki.Action.CREATED and a.reason is None for a in issued.actions)
    assert issued.changed


def test_ca(spec: ClusterSpec, state: StateLayout, issued: pki.PkiReport) -> None:
    ca, key = ca_pair(state)
    assert pki.common_name(ca) == "postgresql-cluster-ca"
    assert ca.issuer == ca.subject and pki.issued_by(ca, ca)
    bc = ext(ca, x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = ext(ca, x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    assert ca.not_valid_after_utc - ca.not_valid_before_utc >= timedelta(days=7300)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"


def test_every_leaf_is_signed_by_the_ca(state: StateLayout, issued: pki.PkiReport) -> None:
    ca_pub = cert(state, "ca").public_key()
    assert isinstance(ca_pub, ec.EllipticCurvePublicKey)
    for stem in LEAVES:
        leaf = cert(state, stem)
        assert leaf.issuer == cert(state, "ca").subject
        assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)
        # Raises InvalidSignature if the CA's key did not sign this certificate.
        ca_pub.verify(leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
        assert not ext(leaf, x509.BasicConstraints).value.ca
        days = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days
        assert 365 <= days <= 366, stem  # issue 18: one year by default (pki.leaf_days), was ten


@pytest.mark.parametrize("index", [0, 1, 2])
def test_etcd_cert(state: StateLayout, issued: pki.PkiReport, index: int) -> None:
    name, member, address = PG_NODES[index]
    c = cert(state, f"etcd-node{index + 1}")
    assert pki.common_name(c) == "etcd-peer"  # the one CN etcd's peer port accepts
    dns = (f"DNS:{name}", f"DNS:{member}", "DNS:localhost")
    assert pki.san_strings(c) == (f"IP:{address}", "IP:127.0.0.1", *dns)
    assert set(ext(c, x509.ExtendedKeyUsage).value) == {ExtendedKeyUsageOID.SERVER_AUTH,
                                                         ExtendedKeyUsageOID.CLIENT_AUTH}
    ku = ext(c, x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_encipherment and not ku.key_cert_sign  # ECDSA: signs only


@pytest.mark.parametrize("index", [0, 1, 2])
def test_server_cert(state: StateLayout, issued: pki.PkiReport, index: int) -> None:
    name, member, address = PG_NODES[index]
    c = cert(state, f"server-{name}")
    assert pki.common_name(c) == name
    dns = (f"DNS:{name}", f"DNS:{member}", "DNS:localhost", f"DNS:{address}")  # the last for pgBackRest
    assert pki.san_strings(c) == (f"IP:{address}", f"IP:{VIP}", "IP:127.0.0.1", *dns)
    assert pki.extended_usages(c) == ("serverAuth", "clientAuth")


@pytest.mark.parametrize(("stem", "user"), [("client", "root"), ("patroni", "patroni"), ("probe", "pgha-probe")])
def test_client_certs_name_their_etcd_user_without_a_cn(state: StateLayout, issued: pki.PkiReport, stem: str,
                                                        user: str) -> None:
    """etcd's JSON gateway answers 400 to a client certificate with a CN once auth is on."""
    c = cert(state, stem)
    assert pki.common_name(c) is None and pki.subject_unit(c) == user
    assert pki.extended_usages(c) == ("clientAuth",)
    assert pki.san_strings(c) == ()


@pytest.mark.parametrize("name", ["root", "patroni", "pgha-probe", "etcd-peer"])
def test_a_node_may_not_take_an_etcd_identity(state: StateLayout, name: str) -> None:
    data = default_data(lab=True)
    data["nodes"][3]["name"] = name
    with pytest.raises(PghaError, match=f"node name '{name}' is the CN of one of pgha's etcd identities"):
        pki.ensure_pki(parse(data), state)


def test_member_defaulting_to_name_gives_one_dns_san(state: StateLayout) -> None:
    data = default_data(lab=True)
    del data["nodes"][3]["member"]
    pki.ensure_pki(parse(data), state)
    assert pki.san_strings(cert(state, "etcd-node1")).count("DNS:postgres-01") == 1


def test_combined_pem(state: StateLayout, issued: pki.PkiReport) -> None:
    crt, key = (p.read_bytes() for p in pki.cert_paths(state, "server-postgres-01"))
    both = pki.combined_pem(crt, key)
    assert both == crt + key
    assert pki.combined_pem(crt.rstrip(b"\n"), key) == both
    assert x509.load_pem_x509_certificate(both) == cert(state, "server-postgres-01")
    assert serialization.load_pem_private_key(both, password=None) is not None


# -- idempotency and re-issue -------------------------------------------------------------------------


def test_second_run_keeps_everything(spec: ClusterSpec, state: StateLayout, issued: pki.PkiReport) -> None:
    before = snapshot(state)
    again = pki.ensure_pki(spec, state)
    assert snapshot(state) == before
    assert not again.changed
    assert all(a.action is pki.Action.KEPT and a.reason is None for a in again.actions)


def test_rotate_reissues_every_leaf_and_keeps_the_ca(spec: ClusterSpec, state: StateLayout,
                                                     issued: pki.PkiReport) -> None:
    ca_before = (state.pki / "ca.crt").read_bytes(), (state.pki / "ca.key").read_bytes()
    serials = {stem: cert(state, stem).serial_number for stem in LEAVES}
    keys = {stem: (state.pki / f"{stem}.key").read_bytes() for stem in LEAVES}
    report = pki.ensure_pki(spec, state, rotate=True)
    assert ((state.pki / "ca.crt").read_bytes(), (state.pki / "ca.key").read_bytes()) == ca_before
    assert report.action_for("ca.crt").action is pki.Action.KEPT
    for stem in LEAVES:
        assert report.action_for(f"{stem}.crt") == pki.PkiAction(state.pki / f"{stem}.crt", pki.Action.REISSUED,
                                                                 "rotated")
        assert cert(state, stem).serial_number != serials[stem]
        assert (state.pki / f"{stem}.key").read_bytes() != keys[stem]  # a new key, not only a new serial
    assert all(s.ok for s in pki.check_pki(spec, state))


def test_address_change_reissues_only_that_node(spec: ClusterSpec, state: StateLayout,
                                                issued: pki.PkiReport) -> None:
    before = snapshot(state)
    data = default_data(lab=True)
    data["nodes"][3]["address"] = "10.203.0.230"  # postgres-01
    report = pki.ensure_pki(parse(data), state)
    after = snapshot(state)
    changed = {"etcd-node1.crt", "etcd-node1.key", "server-postgres-01.crt", "server-postgres-01.key"}
    assert {n for n in ALL_FILES if before[n] != after[n]} == changed
    for name in ALL_FILES:
        assert report.action_for(name).action is (pki.Action.REISSUED if name in changed else pki.Action.KEPT)
    reason = report.action_for("etcd-node1.crt").reason or ""
    assert "missing SANs: IP:10.203.0.230" in reason and "SANs not in the spec: IP:10.203.0.203" in reason
    assert "IP:10.203.0.230" in pki.san_strings(cert(state, "server-postgres-01"))


def test_vip_change_reissues_server_certs(state: StateLayout, issued: pki.PkiReport) -> None:
    data = default_data(lab=True)
    data["vip"]["address"] = "10.203.0.211"
    report = pki.ensure_pki(parse(data), state)
    reissued = {a.path.name for a in report.actions if a.action is pki.Action.REISSUED}
    assert reissued == {f"server-{n}.{e}" for n, _, _ in PG_NODES for e in ("crt", "key")}


def test_expiring_leaf_is_reissued(spec: ClusterSpec, state: StateLayout, issued: pki.PkiReport) -> None:
    later = datetime.now(UTC) + timedelta(days=365 - 10)
    report = pki.ensure_pki(spec, state, now=later)
    for stem in LEAVES:
        assert report.action_for(f"{stem}.crt").action is pki.Action.REISSUED
        assert "expires within 30 days" in (report.action_for(f"{stem}.crt").reason or "")
    assert report.action_for("ca.crt").action is pki.Action.KEPT


def test_new_ca_reissues_every_leaf(spec: ClusterSpec, state: StateLayout, issued: pki.PkiReport) -> None:
    (state.pki / "ca.crt").unlink()
    (state.pki / "ca.key").unlink()
    report = pki.ensure_pki(spec, state)
    assert report.action_for("ca.crt").action is pki.Action.CREATED
    for stem in LEAVES:
        assert "not signed by the cluster CA" in (report.action_for(f"{stem}.crt").reason or "")
        assert pki.issued_by(cert(state, stem), cert(state, "ca"))


def test_missing_leaf_key_is_reissued(spec: ClusterSpec, state: StateLayout, issued: pki.PkiReport) -> None:
    (state.pki / "client.key").unlink()
    report = pki.ensure_pki(spec, state)
    assert report.action_for("client.key").action is pki.Action.REISSUED
    assert "client.key is missing" in (report.action_for("client.key").reason or "")
    assert all(s.ok for s in pki.check_pki(spec, state))


@pytest.mark.parametrize("keep, remove", [("ca.key", "ca.crt"), ("ca.crt", "ca.key")])
def test_incomplete_ca_is_refused(spec: ClusterSpec, state: StateLayout, issued: pki.PkiReport,
                                  keep: str, remove: str) -> None:
    kept = (state.pki / keep).read_bytes()
    (state.pki / remove).unlink()
    with pytest.raises(PghaError) as err:
        pki.ensure_pki(spec, state)
    assert f"{remove} is missing" in str(err.value)
    assert err.value.hint and "restore" in err.value.hint and f"remove {keep}" in err.value.hint
    assert (state.pki / keep).read_bytes() == kept and not (state.pki / remove).exists()


def test_mismatched_ca_is_refused(spec: ClusterSpec, state: StateLayout, issued: pki.PkiReport) -> None:
    (state.pki / "ca.key").write_bytes((state.pki / "client.key").read_bytes())
    with pytest.raises(PghaError, match="does not match"):
        pki.ensure_pki(spec, state)


def test_loose_key_mode_is_tightened_not_reissued(spec: ClusterSpec, state: StateLayout,
                                                   issued: pki.PkiReport) -> None:
    before = snapshot(state)
    (state.pki / "etcd-node2.key").chmod(0o644)
    report = pki.ensure_pki(spec, state)
    assert snapshot(state) == before and mode(state.pki / "etcd-node2.key") == 0o600
    assert report.action_for("etcd-node2.key") == pki.PkiAction(state.pki / "etcd-node2.key", pki.Action.KEPT,
                                                                 "key mode tightened to 0600")


# -- check_pki ---------------------------------------------------------------------------------------


def test_check_clean(spec: ClusterSpec, state: StateLayout, issued: pki.PkiReport) -> None:
    statuses = pki.check_pki(spec, state)
    per_node = [f"{kind}{i + 1 if kind == 'etcd-node' else n}" for i, (n, _, _) in enumerate(PG_NODES)
                for kind in ("etcd-node", "server-")]
    assert [s.name for s in statuses] == ["ca", *per_node, "server-backup-01", "server-monitor-01", *CLIENTS]
    assert all(s.ok for s in statuses), [s.problems for s in statuses]
    server = status(spec, state, "server-postgres-02")
    assert server.common_name == "postgres-02" and f"IP:{VIP}" in server.sans
    assert server.days_left in (364, 365) and server.not_after is not None


def test_leaf_lifetime_from_the_spec(tmp_path: Path) -> None:
    data = default_data(lab=True)
    data["pki"] = {"leaf_days": 90}
    state = StateLayout(tmp_path / "state")
    pki.ensure_pki(parse(data), state)
    leaf = cert(state, "client")
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days == 90


def test_check_nothing_there(spec: ClusterSpec, state: StateLayout) -> None:
    statuses = pki.check_pki(spec, state)
    assert all(any("is missing" in p for p in s.problems) for s in statuses)
    assert statuses[0].days_left is None and statuses[0].sans == ()


def test_check_flags_missing_vip_san(spec: ClusterSpec, state: StateLayout, issued: pki.PkiReport) -> None:
    exp = expected(spec, "server-postgres-01")
    replace_leaf(state, dataclasses.replace(exp, sans=tuple(s for s in exp.sans if s != f"IP:{VIP}")),
                 *ca_pair(state))
    assert status(spec, state, "server-postgres-01").problems == (f"missing SANs: IP:{VIP}",)
    report = pki.ensure_pki(spec, state)
    assert report.action_for("server-postgres-01.crt").reason == f"missing SANs: IP:{VIP}"


def test_check_flags_expiring(spec: ClusterSpec, state: StateLayout, issued: pki.PkiReport) -> None:
    replace_leaf(state, expected(spec, "etcd-node3"), *ca_pair(state), days=10)
    st = status(spec, state, "etcd-node3")
    assert st.days_left is not None and 9 <= st.days_left <= 10
    assert len(st.problems) == 1 and st.problems[0].startswith("expires within 30 days")
    later = datetime.now(UTC) + timedelta(days=11)
    assert status(spec, state, "etcd-node3", now=later).problems[0].startswith("expired on")


def test_check_flags_key_mode(spec: ClusterSpec, state: StateLayout, issued: pki.PkiReport) -> None:
    (state.pki / "client.key").chmod(0o644)
    assert status(spec, state, "client").problems == ("client.key has mode 0644, expected 0600",)
    (state.pki / "client.key").chmod(0o400)  # stricter than 0600 is fine
    assert status(spec, state, "client").ok


def test_check_flags_other_ca(spec: ClusterSpec, state: StateLayout, issued: pki.PkiReport) -> None:
    # Same subject name as the real CA: only the signature can tell them apart.
    impostor = pki._new_ca(pki.ca_common_name(spec))
    assert impostor[0].subject == cert(state, "ca").subject
    replace_leaf(state, expected(spec, "etcd-node2"), *impostor)
    problems = status(spec, state, "etcd-node2").problems
    assert problems == ("not signed by the cluster CA (ca.crt): broken chain",)
    assert not pki.issued_by(cert(state, "etcd-node2"), cert(state, "ca"))


def test_check_flags_wrong_usage(spec: ClusterSpec, state: StateLayout, issued: pki.PkiReport) -> None:
    replace_leaf(state, dataclasses.replace(expected(spec, "etcd-node1"), usages=("serverAuth",)),
                 *ca_pair(state))
    assert status(spec, state, "etcd-node1").problems == ("missing extended key usage: clientAuth",)


def test_check_flags_swapped_keys(spec: ClusterSpec, state: StateLayout, issued: pki.PkiReport) -> None:
    one, two = state.pki / "etcd-node1.key", state.pki / "etcd-node2.key"
    a, b = one.read_bytes(), two.read_bytes()
    one.write_bytes(b)
    two.write_bytes(a)
    assert status(spec, state, "etcd-node1").problems == ("etcd-node1.key does not match etcd-node1.crt",)
    (state.pki / "ca.crt").write_text("garbage")
    assert status(spec, state, "ca").problems == ("ca.crt is not a PEM certificate",)
    assert "cannot check the chain" in status(spec, state, "client").problems[0]


# -- a real TLS handshake ------------------------------------------------------------------------------


@contextmanager
def tls_server(ctx: ssl.SSLContext) -> Iterator[int]:
    """Accept TLS connections on 127.0.0.1 in a thread; each successful one receives b"hello"."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    with ctx.wrap_socket(conn, server_side=True) as tls:
                        tls.sendall(b"hello")
                except (ssl.SSLError, OSError):
                    pass  # the client refused us: that is what some tests want

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def handshake(port: int, ca: Path, hostname: str, client: tuple[Path, Path] | None = None) -> bytes:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT  # OpenSSL's RFC 5280 checks, as Python 3.13 does by default
    if client:
        ctx.load_cert_chain(*client)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=hostname) as tls:
        return tls.recv(5)


def server_ctx(state: StateLayout, stem: str, *, require_client: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*pki.cert_paths(state, stem))
    if require_client:  # as etcd does for peers and clients
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(state.pki / "ca.crt")
    return ctx


def test_tls_handshake_checks_sans(state: StateLayout, issued: pki.PkiReport) -> None:
    ca = state.pki / "ca.crt"
    with tls_server(server_ctx(state, "server-postgres-01")) as port:
        assert handshake(port, ca, "127.0.0.1") == b"hello"
        assert handshake(port, ca, VIP) == b"hello"  # a client of the VIP, through HAProxy's passthrough
        assert handshake(port, ca, "postgresql-01") == b"hello"
        with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
            handshake(port, ca, "10.203.0.99")
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            handshake(port, ca, "postgres-02")


def test_tls_handshake_rejects_other_ca(tmp_path: Path, state: StateLayout, issued: pki.PkiReport) -> None:
    other = tmp_path / "other-ca.crt"
    other.write_bytes(pki._new_ca("other-ca")[0].public_bytes(serialization.Encoding.PEM))
    with tls_server(server_ctx(state, "server-postgres-01")) as port, \
            pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        handshake(port, other, "127.0.0.1")


@pytest.mark.parametrize("client", ["client", "etcd-node2"])
def test_mutual_tls(state: StateLayout, issued: pki.PkiReport, client: str) -> None:
    """etcd peers (serverAuth+clientAuth) and pgha's client cert pass a server that demands client certs."""
    with tls_server(server_ctx(state, "etcd-node1", require_client=True)) as port:
        got = handshake(port, state.pki / "ca.crt", "10.203.0.203", pki.cert_paths(state, client))
        assert got == b"hello"
