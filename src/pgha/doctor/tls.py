"""Certificates and keys as deployed on the nodes: expiry, SANs, the chain, owners and modes, and
whether postgres can read what Patroni and PostgreSQL open (the seed's setfacl step)."""

from __future__ import annotations

from pgha.doctor.model import Evidence, FileFact, Finding, Severity
from pgha.errors import pgha_command
from pgha.files import significant_mode_bits
from pgha.pki import RENEW_DAYS


def reissue() -> str:
    return (f"`{pgha_command('certs', 'rotate')}`: re-issues every leaf certificate, pushes it to the nodes and "
            "reloads the engines (no restart)")


def expiry(ev: Evidence) -> list[Finding]:
    out = []
    for f in ev.nodes:
        for c in f.certs:
            if c.not_after is None:
                continue
            days = (c.not_after - ev.now).total_seconds() / 86400
            if days >= RENEW_DAYS:
                continue
            expired = days < 0
            out.append(Finding(
                f"certificate {'expired' if expired else 'expires soon'} on {f.node.name}: {c.path}",
                f"notAfter {c.not_after:%Y-%m-%d %H:%M} UTC ({days:.0f} days)",
                f"replace the cluster CA: `{pgha_command('certs')}` cannot re-sign with an expiring CA; "
                "see the README" if
                c.kind in ("ca", "haproxy-ca") else reissue(),
                Severity.ERROR if expired else Severity.WARNING, f.node.name, "tls.expiry"))
    return out


def sans(ev: Evidence) -> list[Finding]:
    """Server certificates must name the node, 127.0.0.1 (Patroni's local replication) and the VIP
    (verify-full through HAProxy); etcd's must name the node and 127.0.0.1."""
    out = []
    vip = f"IP:{ev.spec.vip.address}"
    for f in ev.pg_facts:
        for c in f.certs:
            if c.kind not in ("server", "etcd") or c.not_after is None:
                continue
            want = [f"IP:{f.node.address}", "IP:127.0.0.1"] + ([vip] if c.kind == "server" else [])
            missing = [w for w in want if w not in c.sans]
            if missing:
                out.append(Finding(f"certificate on {f.node.name} lacks SANs: {c.path}",
                                   f"has {', '.join(c.sans) or 'no SAN'}; missing {', '.join(missing)}",
                                   reissue(), node=f.node.name, code="tls.sans"))
    return out


def chain(ev: Evidence) -> list[Finding]:
    out = []
    for f in ev.nodes:
        for c in f.certs:
            if c.same_as_cluster_ca is False:
                out.append(Finding(f"CA mismatch on {f.node.name}: {c.path} is not the cluster CA",
                                   "its content differs from pgha's pki/ca.crt: peers' certificates will not verify",
                                   f"copy pgha's pki/ca.crt to {c.path} on {f.node.name} (owner and mode kept), "
                                   "then restart the services that use it", node=f.node.name, code="tls.ca_mismatch"))
            elif c.issued_by_node_ca is False:
                out.append(Finding(f"certificate on {f.node.name} is not signed by the node's CA: {c.path}",
                                   "the chain to ca.crt is broken", reissue(), node=f.node.name, code="tls.chain"))
            elif c.error:
                out.append(Finding(f"certificate on {f.node.name} cannot be read: {c.path}", c.error, reissue(),
                                   node=f.node.name, code="tls.unreadable_cert"))
    return out


def _loose(fact: FileFact) -> bool:
    assert fact.stat is not None
    return bool(fact.stat.mode & significant_mode_bits(fact.acl) & ~fact.want_mode)


def ownership(ev: Evidence) -> list[Finding]:
    """Keys and password-bearing files: the owner the plan gives them, no more access than planned.
    PostgreSQL refuses a key that group or others can read; etcd and Patroni need to own or read theirs."""
    out = []
    for f in ev.nodes:
        for x in f.files:
            if x.stat is None:
                out.append(Finding(f"{x.path} is missing on {f.node.name}", "no such file",
                                   reissue() if x.path.endswith((".crt", ".key", ".pem")) else
                                   f"deploy it again (`{pgha_command('render')}` writes every node's files)",
                                   node=f.node.name, code="files.missing"))
                continue
            wrong_owner = (x.stat.owner, x.stat.group) != (x.want_owner, x.want_group)
            if not wrong_owner and not _loose(x):
                continue
            secret = x.is_key or not x.path.endswith(".crt")
            if not secret and not wrong_owner:
                continue  # a certificate readable by all is fine
            fix = f"on {f.node.name}: chown {x.want_owner}:{x.want_group} {x.path} && chmod {x.want_mode:04o} {x.path}"
            if x.acl:
                fix += f" && setfacl -m u:postgres:r {x.path}"
            out.append(Finding(
                f"wrong owner or mode on {f.node.name}: {x.path}",
                f"{x.stat.owner}:{x.stat.group} {x.stat.mode:04o}, expected {x.want_owner}:{x.want_group} "
                f"{x.want_mode:04o}" + (" (+ ACL u:postgres:r)" if x.acl else ""),
                fix, Severity.ERROR if secret else Severity.WARNING, f.node.name, "files.mode"))
    return out


def unreadable(ev: Evidence) -> list[Finding]:
    """postgres (Patroni, PostgreSQL) cannot read a file it opens: Patroni cannot reach etcd over TLS,
    or PostgreSQL cannot load its certificate."""
    out = []
    for f in ev.pg_facts:
        etcd3 = (f.patroni_config or {}).get("etcd3") or {}
        etcd_paths = {str(v) for k, v in etcd3.items() if k in ("cacert", "cert", "key")} if isinstance(etcd3, dict) \
            else set()
        for x in f.files:
            if x.postgres_can_read is not False:
                continue
            who = "Patroni cannot reach etcd over TLS" if x.path in etcd_paths else \
                "Patroni/PostgreSQL cannot load it"
            how = (f"on {f.node.name}: setfacl -m u:postgres:r {x.path} (and u:postgres:rx on its directory)"
                   if x.acl else
                   f"on {f.node.name}: chown {x.want_owner}:{x.want_group} {x.path} && "
                   f"chmod {x.want_mode:04o} {x.path}")
            st = x.stat
            out.append(Finding(f"postgres cannot read {x.path} on {f.node.name}: {who}",
                               (f"{st.owner}:{st.group} {st.mode:04o}; `test -r` as postgres fails"
                                + (" (no ACL entry for postgres?)" if x.acl else "")) if st else "missing",
                               how, node=f.node.name, code="tls.unreadable"))
    return out


DIAGNOSES = (expiry, sans, chain, ownership, unreadable)
