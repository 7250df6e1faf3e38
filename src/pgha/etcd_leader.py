"""Keep etcd's raft leadership off the node of Patroni's leader.

Why: when the node that holds both dies, the new etcd leader gives every lease its full TTL again
(etcd issues 9395, 13294; lease checkpointing does not help a lease shorter than its fixed 5-minute
interval), so the dead leader's key lives one more ttl and the write outage grows by up to a ttl.
With etcd's leader elsewhere, the dead leader's lease simply runs out.

Standard library only: pgha imports it (bring-up, switchover, failover, ``pgha etcd move-leader``,
with the operator's credentials) and the same file is Patroni's ``on_role_change`` callback on each
PostgreSQL node (run by Patroni's Python, with Patroni's own etcd credentials, from a JSON config)::

    python3 pgha-role-change.py --config FILE  ACTION ROLE SCOPE      (Patroni appends the last three)

The callback never blocks or fails Patroni: it detaches a child in its own session and exits 0 at once;
the child tries for a few seconds at most and logs one line (to Patroni's output) either way.
"""

from __future__ import annotations

import argparse
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

PROMOTED_ROLES = ("primary", "master", "promoted")


class MoveError(Exception):
    """etcd could not be asked, or refused to move its leadership."""


@dataclass(frozen=True)
class Gateway:
    """etcd members' v3 JSON gateways (name -> https URL), with TLS and optional password login.

    urllib, not pgha's httpx client: this file also runs in Patroni's virtualenv, where pgha is not installed.
    """

    endpoints: dict[str, str]
    tls: ssl.SSLContext
    username: str | None = None
    password: str | None = None
    timeout: float = 2.0

    def post(self, member: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.endpoints[member]
        headers = {"Content-Type": "application/json"}
        if self.username and self.password:
            try:
                headers["Authorization"] = self._call(url, "/v3/auth/authenticate", {
                    "name": self.username, "password": self.password}, headers)["token"]
            except MoveError as exc:
                if "authentication is not enabled" not in str(exc):
                    raise
        return self._call(url, path, body, headers)

    def _call(self, url: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        req = urllib.request.Request(url + path, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.tls) as resp:
                answer: dict[str, Any] = json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise MoveError(f"{url}{path}: HTTP {exc.code} {exc.read().decode(errors='replace').strip()}") from None
        except (OSError, ValueError) as exc:
            raise MoveError(f"{url}{path}: {type(exc).__name__}: {exc}") from None
        if "error" in answer:  # the gateway's gRPC error, with a 200 on some versions
            raise MoveError(f"{url}{path}: {answer.get('message') or answer['error']}")
        return answer


def leader(gw: Gateway) -> tuple[str, dict[str, str]]:
    """The member name of etcd's leader and every member's id (name -> id), asked of the first that answers."""
    errors = []
    for name in gw.endpoints:
        try:
            status = gw.post(name, "/v3/maintenance/status", {})
            members = gw.post(name, "/v3/cluster/member/list", {})["members"]
        except MoveError as exc:
            errors.append(str(exc))
            continue
        ids = {m["name"]: str(m["ID"]) for m in members if m.get("name")}
        lead = next((n for n, i in ids.items() if i == str(status.get("leader"))), None)
        if lead is None:
            errors.append(f"{name}: no etcd leader right now")
            continue
        return lead, ids
    raise MoveError("; ".join(errors) or "no etcd member configured")


def move(gw: Gateway, *, away_from: str | None = None, to: str | None = None) -> str:
    """Move etcd's leadership off member ``away_from`` (to a member that answers) or onto member ``to``.

    Returns what was done; raises :class:`MoveError` when etcd cannot be asked or refuses.
    """
    lead, ids = leader(gw)
    if to is not None:
        if to not in ids:
            raise MoveError(f"{to} is not an etcd member ({', '.join(ids)})")
        if lead == to:
            return f"etcd's leader is already {to}: nothing to move"
        targets = [to]
    elif lead != away_from:
        return f"etcd's leader is {lead}, not {away_from}: nothing to move"
    else:
        targets = [n for n in ids if n != lead and n in gw.endpoints]
    errors = []
    for target in targets:
        try:  # a member that does not answer cannot lead: try the next one
            if to is None:
                gw.post(target, "/v3/maintenance/status", {})
            gw.post(lead, "/v3/maintenance/transfer-leadership", {"targetID": ids[target]})
        except MoveError as exc:
            errors.append(str(exc))
            continue
        return f"moved etcd's leadership from {lead} to {target}"
    raise MoveError(f"etcd's leadership stays on {lead}: " + ("; ".join(errors) or "no other member"))


def operator_gateway(spec: Any, creds: Any, timeout: float = 5.0) -> Gateway:
    """pgha's own (a ClusterSpec, Credentials: untyped here, Patroni's Python has no pgha): the operator's
    certificate as etcd's root (etcd 3.6 lets only root move the leadership)."""
    return Gateway({n.member_name: f"https://{n.address}:{spec.ports.etcd_client}" for n in spec.postgres_nodes},
                   creds.tls(), "root", creds.secrets.etcd_root_password, timeout)


# -- Patroni's on_role_change callback ---------------------------------------------------------------
def gateway_from(config: dict[str, Any], timeout: float) -> Gateway:
    tls = ssl.create_default_context(cafile=config["cacert"])
    if config.get("cert"):
        tls.load_cert_chain(config["cert"], config.get("key"))
    return Gateway(config["endpoints"], tls, config.get("username"), config.get("password"), timeout)


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pgha on_role_change: {message}", file=sys.stderr, flush=True)


def callback(argv: list[str]) -> int:
    """Patroni's entry point: always exit 0 at once; a promoted node moves etcd's leadership away."""
    parser = argparse.ArgumentParser(prog="pgha-role-change")
    parser.add_argument("--config", required=True)
    parser.add_argument("--now", action="store_true", help="do it here (the detached child)")
    parser.add_argument("patroni", nargs="*", help="ACTION ROLE SCOPE, as Patroni passes them")
    try:
        args = parser.parse_args(argv)
        role = args.patroni[1] if len(args.patroni) > 1 else ""
        if not args.now:
            if role in PROMOTED_ROLES:
                subprocess.Popen([sys.executable, __file__, "--config", args.config, "--now", *args.patroni],
                                 start_new_session=True, stdin=subprocess.DEVNULL)
            return 0
        with open(args.config, encoding="utf-8") as f:
            config = json.load(f)
        deadline = time.monotonic() + float(config.get("deadline", 10))
        while True:  # a fresh leader's etcd may still be electing: retry until the deadline
            try:
                log(move(gateway_from(config, 2.0), away_from=config["member"]))
                return 0
            except MoveError as exc:
                if time.monotonic() > deadline:
                    log(f"FAILED, Patroni unaffected: {exc} (fix: `pgha etcd move-leader` from the operator's "
                        "machine)")
                    return 0
            time.sleep(1.0)
    except (Exception, SystemExit) as exc:  # never a failure for Patroni, whatever went wrong
        log(f"FAILED, Patroni unaffected: {type(exc).__name__}: {exc}")
        return 0


if __name__ == "__main__":
    sys.exit(callback(sys.argv[1:]))
