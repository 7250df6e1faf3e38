"""The cluster's PKI: one CA and the certificates of etcd, Patroni, PostgreSQL and pgha itself.

Everything lives in ``state.pki`` (mode 0700)::

    ca.crt ca.key            the cluster CA; created once, never replaced silently
    etcd-nodeN.crt/.key      etcd on the N-th postgres node (peer and client-facing), CN etcd-peer
    server-<node>.crt/.key   Patroni REST API, PostgreSQL and pgBackRest's server on that node; on the
                             backup node pgBackRest's server (and its client certificate towards the others)
    patroni.crt/.key         Patroni as a client of etcd and of the other members' REST API (CN patroni),
                             also on every PostgreSQL node
    client.crt/.key          pgha, the operator: etcd's root user (OU root); never leaves this machine
    probe.crt/.key           pgha's read-only etcd probes (OU pgha-probe); never leaves this machine

The client certificates name their etcd user in the OU, not the CN (:func:`client_certs`); etcd's peer
port accepts the CN etcd-peer only, which the members' certificates alone carry.

Keys are ECDSA P-256 with SHA-256 signatures: fast to generate and accepted by etcd, Patroni,
HAProxy and PostgreSQL. :func:`ensure_pki` is idempotent; :func:`check_pki` only reads.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pgha.errors import PghaError
from pgha.layout import StateLayout, etcd_cert_name
from pgha.secrets import make_private_dir, write_atomic
from pgha.spec import ClusterSpec, Node

CA_NAME = "ca"
# File stems and subject OUs of the client certificates: the OU names the etcd user (no CN, see client_certs).
CLIENT_NAME, ROOT_USER = "client", "root"
PATRONI_NAME, PATRONI_USER = "patroni", "patroni"
PROBE_NAME, PROBE_USER = "probe", "pgha-probe"
ETCD_PEER_CN = "etcd-peer"
"""The CN of every etcd member's certificate, the only one etcd's peer port accepts (and no etcd user)."""
RESERVED_CNS = (ROOT_USER, PATRONI_USER, PROBE_USER, ETCD_PEER_CN)
"""Names a node (its server certificate's CN) must not take: etcd maps a CN to the user of that name on
its gRPC API, and etcd-peer opens the peer port."""
CA_DAYS = 7300  # the seed's `openssl req -x509 -days 7300`
LEAF_DAYS = 365  # the default of the spec's pki.leaf_days
RENEW_DAYS = 30
CLOCK_SKEW = timedelta(minutes=5)  # not_before a little in the past: nodes' clocks are never exact
KEY_MODE, CERT_MODE = 0o600, 0o644
USAGES = {"serverAuth": ExtendedKeyUsageOID.SERVER_AUTH, "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH}
IssuerKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
T = TypeVar("T")


class Action(StrEnum):
    CREATED = "created"
    KEPT = "kept"
    REISSUED = "reissued"


@dataclass(frozen=True)
class PkiAction:
    """What :func:`ensure_pki` did to one file, and why when it re-issued it."""

    path: Path
    action: Action
    reason: str | None = None


@dataclass(frozen=True)
class PkiReport:
    """The outcome of :func:`ensure_pki`: one :class:`PkiAction` per file (key, then certificate)."""

    directory: Path
    actions: tuple[PkiAction, ...]

    @property
    def changed(self) -> bool:
        return any(a.action is not Action.KEPT for a in self.actions)

    def action_for(self, filename: str) -> PkiAction:
        return next(a for a in self.actions if a.path.name == filename)


@dataclass(frozen=True)
class ExpectedCert:
    """A leaf certificate the spec calls for: file stem, subject CN, SANs ("IP:..", "DNS:..") and EKUs;
    ``unit`` (subject OU) instead of a CN for the clients of etcd's JSON gateway (see :func:`client_certs`)."""

    name: str
    common_name: str | None
    sans: tuple[str, ...]
    usages: tuple[str, ...]
    unit: str | None = None


@dataclass(frozen=True)
class CertStatus:
    """What :func:`check_pki` found for one certificate; ``problems`` is empty when all is well."""

    name: str
    path: Path
    key_path: Path
    common_name: str | None
    sans: tuple[str, ...]
    not_after: datetime | None
    days_left: int | None
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


# -- what the spec calls for ------------------------------------------------------------------------


def ca_common_name(spec: ClusterSpec) -> str:
    return f"{spec.name}-ca"


def server_cert_name(node: Node) -> str:
    """File stem of a node's server certificate (postgres and backup nodes)."""
    return f"server-{node.name}"


def cert_paths(state: StateLayout, name: str) -> tuple[Path, Path]:
    """``(certificate, key)`` paths for the file stem ``name``."""
    return state.pki / f"{name}.crt", state.pki / f"{name}.key"


def expected_certs(spec: ClusterSpec) -> tuple[ExpectedCert, ...]:
    """Every leaf certificate of the cluster: etcd and server per postgres node, server of the backup node,
    then the client ones."""
    both = ("serverAuth", "clientAuth")  # etcd 3.5+ rejects peer certificates without clientAuth
    out: list[ExpectedCert] = []
    for node in spec.nodes:
        if not (node.is_postgres or node.is_backup or node.is_monitor):
            continue  # HAProxy passes TLS through: it serves no certificate of its own
        if node.name in RESERVED_CNS:
            raise PghaError(f"node name {node.name!r} is the CN of one of pgha's etcd identities: its server "
                            "certificate (CN = node name) would act as that etcd user",
                            hint=f"rename the node; reserved: {', '.join(RESERVED_CNS)}")
        dns = (f"DNS:{node.name}", f"DNS:{node.member_name}", "DNS:localhost")
        # pgBackRest (2.45) matches a host it dials by address against DNS names only, not IP SANs.
        by_address = (f"DNS:{node.address}",) if spec.backup_node is not None else ()
        # pgBackRest's server, and its client identity towards the PostgreSQL nodes' servers; Prometheus' and
        # Alertmanager's HTTPS, and the monitor's client identity towards etcd's /metrics.
        if node.is_backup or node.is_monitor:
            out.append(ExpectedCert(server_cert_name(node), node.name,
                                    _unique(f"IP:{node.address}", "IP:127.0.0.1", *dns,
                                            *(by_address if node.is_backup else ())), both))
            continue
        etcd = etcd_cert_name(spec, node)
        out.append(ExpectedCert(etcd, ETCD_PEER_CN, _unique(f"IP:{node.address}", "IP:127.0.0.1", *dns), both))
        # A client of the VIP reaches this node through HAProxy's TCP passthrough and sees this certificate.
        sans = _unique(f"IP:{node.address}", f"IP:{spec.vip.address}", "IP:127.0.0.1", *dns, *by_address)
        out.append(ExpectedCert(server_cert_name(node), node.name, sans, both))
    return tuple(out) + client_certs()


def client_certs() -> tuple[ExpectedCert, ...]:
    """The client-only certificates: Patroni's (on the nodes), then the operator's and the probes'.

    They carry no CN: with auth on, etcd's JSON gateway (all Patroni and pgha speak) answers 400 to a
    client certificate with one ("CommonName of client sending a request against gateway will be
    ignored", etcd 3.4/3.5). The identity is the subject's OU, and the etcd user of that name logs in
    with its password (:mod:`pgha.etcd_auth`).
    """
    return tuple(ExpectedCert(name, None, (), ("clientAuth",), unit)
                 for name, unit in ((PATRONI_NAME, PATRONI_USER), (CLIENT_NAME, ROOT_USER), (PROBE_NAME, PROBE_USER)))


def _unique(*items: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))  # the member name defaults to the node name: one DNS SAN, not two


# -- reading certificates (also for doctor) ---------------------------------------------------------


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def common_name(cert: x509.Certificate) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def subject_unit(cert: x509.Certificate) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return str(attrs[0].value) if attrs else None


def _subject(common_name: str | None, unit: str | None = None) -> x509.Name:
    oid, value = (NameOID.COMMON_NAME, common_name) if common_name else (NameOID.ORGANIZATIONAL_UNIT_NAME, unit)
    return x509.Name([x509.NameAttribute(oid, value or "")])


def san_strings(cert: x509.Certificate) -> tuple[str, ...]:
    """The certificate's SANs as "IP:10.0.0.1" / "DNS:name" strings, in certificate order."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    kinds: dict[type, str] = {x509.IPAddress: "IP", x509.DNSName: "DNS"}
    return tuple(f"{kinds.get(type(gn), type(gn).__name__)}:{gn.value}" for gn in names)


def _general_name(san: str) -> x509.GeneralName:
    kind, _, value = san.partition(":")
    return x509.IPAddress(ipaddress.ip_address(value)) if kind == "IP" else x509.DNSName(value)


def extended_usages(cert: x509.Certificate) -> tuple[str, ...]:
    """EKU names ("serverAuth", "clientAuth", other OIDs dotted); empty without the extension."""
    try:
        oids = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return ()
    names = {oid: name for name, oid in USAGES.items()}
    return tuple(names.get(oid, oid.dotted_string) for oid in oids)


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """True if ``ca`` issued ``cert``: the issuer name matches and the signature verifies."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def combined_pem(cert_pem: bytes, key_pem: bytes) -> bytes:
    """Certificate then key in one PEM, as Patroni's ``restapi.certfile`` wants them."""
    return cert_pem + (b"" if cert_pem.endswith(b"\n") else b"\n") + key_pem


# -- issuing ----------------------------------------------------------------------------------------


def _key_usage(*, leaf: bool) -> x509.KeyUsage:
    # ECDSA keys sign (ECDHE handshakes); they never encipher a key: no keyEncipherment on the leaves.
    return x509.KeyUsage(digital_signature=leaf, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=not leaf,
                         crl_sign=not leaf, encipher_only=False, decipher_only=False)


def _sign(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
          issuer_key: IssuerKey, now: datetime, days: int, extensions: list[tuple[x509.ExtensionType, bool]]
          ) -> x509.Certificate:
    not_after = now + timedelta(days=days)
    if issuer is not None:  # past its CA's expiry a leaf fails anyway: say so in the leaf
        not_after = min(not_after, issuer.not_valid_after_utc)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.subject if issuer else subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - CLOCK_SKEW).not_valid_after(not_after)
               # Key identifiers let OpenSSL 3 (also in strict mode) and Go build the chain unambiguously.
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False))
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def _new_ca(cn: str, *, days: int = CA_DAYS, now: datetime | None = None
            ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    # path_length 0: this CA signs leaves only, never another CA.
    exts: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=True, path_length=0), True), (_key_usage(leaf=False), True)]
    return _sign(_subject(cn), key, None, key, now or datetime.now(UTC), days, exts), key


def _issue_leaf(exp: ExpectedCert, ca: x509.Certificate, ca_key: IssuerKey, *, days: int = LEAF_DAYS,
                now: datetime | None = None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    exts: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=False, path_length=None), True), (_key_usage(leaf=True), True),
        (x509.ExtendedKeyUsage([USAGES[u] for u in exp.usages]), False)]
    if exp.sans:
        exts.append((x509.SubjectAlternativeName([_general_name(s) for s in exp.sans]), False))
    return _sign(_subject(exp.common_name, exp.unit), key, ca, ca_key, now or datetime.now(UTC), days, exts), key


def _write_pair(crt: Path, key_path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    write_atomic(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()), KEY_MODE)
    write_atomic(crt, cert.public_bytes(serialization.Encoding.PEM), CERT_MODE)


# -- inspecting -------------------------------------------------------------------------------------


def _read(path: Path, what: str, loader: Callable[[bytes], T]) -> tuple[T | None, list[str]]:
    try:
        return loader(path.read_bytes()), []
    except FileNotFoundError:
        return None, [f"{path.name} is missing"]
    except OSError as exc:
        return None, [f"cannot read {path.name}: {exc.strerror}"]
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None, [f"{path.name} is not {what}"]


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _load_pair(crt: Path, key_path: Path
               ) -> tuple[x509.Certificate | None, PrivateKeyTypes | None, list[str]]:
    """Certificate and key, plus problems: a file missing or unreadable, or a key that is not the cert's."""
    cert, problems = _read(crt, "a PEM certificate", x509.load_pem_x509_certificate)
    key, key_problems = _read(key_path, "an unencrypted PEM private key",
                              lambda data: serialization.load_pem_private_key(data, password=None))
    if cert is not None and key is not None and _spki(cert.public_key()) != _spki(key.public_key()):
        key_problems.append(f"{key_path.name} does not match {crt.name}")
    return cert, key, problems + key_problems


def _expiry_problems(cert: x509.Certificate, now: datetime) -> list[str]:
    end = cert.not_valid_after_utc
    if end <= now:
        return [f"expired on {end:%Y-%m-%d}"]
    return [f"expires within {RENEW_DAYS} days ({end:%Y-%m-%d})"] if end - now < timedelta(RENEW_DAYS) else []


def _leaf_check(exp: ExpectedCert, crt: Path, key_path: Path, ca: x509.Certificate | None,
                now: datetime) -> tuple[x509.Certificate | None, list[str]]:
    """Everything wrong with a leaf's contents (file modes aside): the one test ensure and check share."""
    cert, _, problems = _load_pair(crt, key_path)
    if cert is None:
        return None, problems
    if ca is None:
        problems.append("cannot check the chain: no usable ca.crt")
    elif not issued_by(cert, ca):
        problems.append("not signed by the cluster CA (ca.crt): broken chain")
    if common_name(cert) != exp.common_name:
        problems.append(f"subject CN is {common_name(cert)!r}, expected {exp.common_name!r}")
    if exp.unit and subject_unit(cert) != exp.unit:
        problems.append(f"subject OU is {subject_unit(cert)!r}, expected {exp.unit!r}")
    have, usages = san_strings(cert), extended_usages(cert)
    for label, names in (("missing SANs", [s for s in exp.sans if s not in have]),
                         ("SANs not in the spec", [s for s in have if s not in exp.sans]),
                         ("missing extended key usage", [u for u in exp.usages if u not in usages])):
        if names:
            problems.append(f"{label}: {', '.join(names)}")
    return cert, problems + _expiry_problems(cert, now)


def _loose_mode(key_path: Path) -> int | None:
    """The key's mode if group or others may access it (0400 is as fine as 0600), else None."""
    try:
        mode = key_path.stat().st_mode & 0o777
    except FileNotFoundError:
        return None
    return mode if mode & 0o077 else None


def _status(name: str, crt: Path, key_path: Path, cert: x509.Certificate | None, problems: list[str],
            now: datetime) -> CertStatus:
    mode = _loose_mode(key_path)
    if mode is not None:
        problems = [*problems, f"{key_path.name} has mode {mode:04o}, expected 0600"]
    if cert is None:
        return CertStatus(name, crt, key_path, None, (), None, None, tuple(problems))
    end = cert.not_valid_after_utc
    return CertStatus(name, crt, key_path, common_name(cert), san_strings(cert), end, (end - now).days,
                      tuple(problems))


def check_pki(spec: ClusterSpec, state: StateLayout, now: datetime | None = None) -> list[CertStatus]:
    """Inspect the CA and every expected certificate; changes nothing."""
    now = now or datetime.now(UTC)
    ca_crt, ca_key = cert_paths(state, CA_NAME)
    ca, _, problems = _load_pair(ca_crt, ca_key)
    if ca is not None:
        try:
            is_ca = ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        problems += ([] if is_ca else ["not a CA certificate (no basicConstraints CA:TRUE)"])
        problems += _expiry_problems(ca, now)
    out = [_status(CA_NAME, ca_crt, ca_key, ca, problems, now)]
    for exp in expected_certs(spec):
        crt, key_path = cert_paths(state, exp.name)
        cert, problems = _leaf_check(exp, crt, key_path, ca, now)
        out.append(_status(exp.name, crt, key_path, cert, problems, now))
    return out


# -- ensuring ---------------------------------------------------------------------------------------


def _keep(crt: Path, key_path: Path) -> list[PkiAction]:
    reason = None
    if _loose_mode(key_path) is not None:
        os.chmod(key_path, KEY_MODE)
        reason = f"key mode tightened to {KEY_MODE:04o}"
    return [PkiAction(key_path, Action.KEPT, reason), PkiAction(crt, Action.KEPT)]


def _ensure_ca(spec: ClusterSpec, state: StateLayout, now: datetime
               ) -> tuple[x509.Certificate, IssuerKey, list[PkiAction]]:
    crt, key_path = cert_paths(state, CA_NAME)
    if not crt.exists() and not key_path.exists():
        new_cert, new_key = _new_ca(ca_common_name(spec), now=now)
        _write_pair(crt, key_path, new_cert, new_key)
        return new_cert, new_key, [PkiAction(key_path, Action.CREATED), PkiAction(crt, Action.CREATED)]
    recreate = "(every certificate is then re-issued and must be deployed again)"
    if not crt.exists() or not key_path.exists():
        present, absent = (key_path, crt) if key_path.exists() else (crt, key_path)
        raise PghaError(f"{present} exists but {absent.name} is missing: refusing to replace the cluster CA",
                        hint=f"restore {absent.name} from a backup, or remove {present.name} to create "
                             f"a new CA {recreate}")
    cert, key, problems = _load_pair(crt, key_path)
    if not problems and cert is not None and isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        return cert, key, _keep(crt, key_path)
    # Both files loaded and matching: the only problem left is a key type that cannot sign.
    problems = problems or ["ca.key is neither an EC nor an RSA key"]
    raise PghaError(f"the cluster CA in {state.pki} is unusable: " + "; ".join(problems),
                    hint=f"restore ca.crt and ca.key from a backup, or remove both to create a new CA "
                         f"{recreate}")


def ensure_pki(spec: ClusterSpec, state: StateLayout, *, now: datetime | None = None,
               rotate: bool = False) -> PkiReport:
    """Create the CA and every certificate the spec needs; keep those still valid, byte for byte.

    A leaf is re-issued (with a new key) only when a file is missing or unreadable, its key does not
    match, it is not signed by the current CA, its CN, SANs or usages no longer match the spec, or it
    expires within 30 days — or always with ``rotate`` (``pgha certs rotate``). An incomplete CA raises
    :class:`PghaError` instead of being replaced.
    """
    now = now or datetime.now(UTC)
    make_private_dir(state.pki)
    os.chmod(state.pki, 0o700)  # private keys live here, whoever created the directory
    ca, ca_key, actions = _ensure_ca(spec, state, now)
    for exp in expected_certs(spec):
        crt, key_path = cert_paths(state, exp.name)
        action, reason = Action.CREATED, None
        if crt.exists() or key_path.exists():
            _, problems = _leaf_check(exp, crt, key_path, ca, now)
            if not problems and not rotate:
                actions += _keep(crt, key_path)
                continue
            action, reason = Action.REISSUED, "; ".join(problems) or "rotated"
        cert, key = _issue_leaf(exp, ca, ca_key, days=spec.pki.leaf_days, now=now)
        _write_pair(crt, key_path, cert, key)
        actions += [PkiAction(key_path, action, reason), PkiAction(crt, action, reason)]
    return PkiReport(state.pki, tuple(actions))
