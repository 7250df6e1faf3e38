"""`pgha deploy`: plan, diff, then apply — to servers over SSH, services through systemd.

    facts     per server, in parallel: missing packages, Patroni's virtualenv, time zone, services
    plan      the :class:`~pgha.target.ServerTarget`'s plan of every server — what `pgha render` writes —
              (etcd ``existing`` once its cluster has formed)
    diff      the files and directories that differ (content, owner, mode, ACL), packages to install,
              services to start, restart or reload — what ``--dry-run`` prints, changing nothing
    ports     the seed's section 2 (:mod:`pgha.deploy.ports`): every port open between the nodes that
              need it, tried through short-lived listeners where nothing listens yet; a blocked
              pair stops the deploy before anything is installed (``--no-port-check`` skips it)
    apply     packages (apt or the shipped bundle), time zone, users, files, units; then either the
              seed's bring-up through the :class:`~pgha.orchestrate.Orchestrator` (a new cluster) or
              only the reactions the changed files need: etcd restarted one member at a time, Patroni
              and HAProxy reloaded, services that are down started in the seed's order
    verify    `pgha verify`

A second run finds nothing to do and says so.
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pgha import monitoring
from pgha.deploy import packages, sources
from pgha.deploy.bundle import ROLES, Bundle
from pgha.deploy.ports import PortReport
from pgha.deploy.ports import check as check_ports
from pgha.errors import UsageError, pgha_command
from pgha.orchestrate import Orchestrator, Reporter
from pgha.plan import NodePlan, uses_pgdg_source
from pgha.probe import Credentials
from pgha.probe.cluster import Prober
from pgha.render.etcd import ClusterState
from pgha.spec import ClusterSpec, Node
from pgha.target import ServerTarget
from pgha.topology import services_of
from pgha.transport.base import ServiceState
from pgha.transport.ssh import FileChange
from pgha.verify import VerifyReport, verify


@dataclass(frozen=True)
class ServerFacts:
    node: Node
    packages: packages.PackageFacts
    timezone: str
    services: dict[str, ServiceState]
    etcd_formed: bool


@dataclass(frozen=True)
class Change:
    """One difference between a server and its plan (or one action taken to remove it)."""

    node: str
    kind: str
    """packages | timezone | file | dir | link | start | restart | reload | daemon-reload"""
    what: str
    diff: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"node": self.node, "kind": self.kind, "what": self.what, "diff": self.diff}


@dataclass
class DeployResult:
    dry_run: bool
    changes: list[Change] = field(default_factory=list)
    seconds: float = 0.0
    verify: VerifyReport | None = None
    ports: PortReport | None = None
    """The port check (the seed's section 2), unless skipped."""

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "changed": self.changed, "seconds": round(self.seconds, 1),
                "changes": [c.as_dict() for c in self.changes],
                "ports": self.ports.as_dict() if self.ports else None,
                "verify": self.verify.as_dict() if self.verify else None}


SECRET_LINE = re.compile(r"(?i)^(?!\s*password_encryption)(\s*[-\w.]*(password|auth_pass|secret)[-\w.]*\s*[:=]?\s*).+$")


def _masked(text: str) -> list[str]:
    """Lines with passwords shown as ``***``: a diff must not print them."""
    return [SECRET_LINE.sub(r"\1***", line) + "\n" for line in text.splitlines()]


def file_diff(change: FileChange, new: bytes | None) -> str:
    """A unified diff of a changed text file, passwords masked; keys and binary files are not shown."""
    if new is None or "content" not in change.changes:
        return ""
    if change.path.endswith((".key", ".pem", ".crt")):
        return "(certificate or key differs; not shown)"
    try:
        old_lines, new_lines = _masked((change.old or b"").decode()), _masked(new.decode())
    except UnicodeDecodeError:
        return "(binary content differs)"
    if old_lines == new_lines:
        return "(only a password differs; not shown)"
    return "".join(difflib.unified_diff(old_lines, new_lines, f"{change.node}:{change.path}",
                                        f"{change.node}:{change.path} (planned)"))


def reactions(node: Node, plan: NodePlan, changed: list[str]) -> list[tuple[str, str, str]]:
    """What a changed file needs on a running server: (action, service, because) — never more."""
    lay = plan.layout
    units = {p for s in services_of(lay.spec, node) for p in (lay.unit(s), lay.dropin(s))}
    out: list[tuple[str, str, str]] = []

    def add(action: str, service: str, path: str) -> None:
        if not any(a == action and s == service for a, s, _ in out):
            out.append((action, service, path))

    watching = [s for s in services_of(lay.spec, node) if s in monitoring.SERVICE_BUILDERS]
    for path in changed:
        if path in units:
            add("daemon-reload", "", path)
        for service in watching:  # small daemons that keep no state worth a reload: restarted
            if path.startswith(f"{lay.prometheus_dir}/") or path == lay.unit(service):
                add("restart", service, path)
        if node.is_postgres:
            if path in (lay.etcd_env, lay.etcd_crt, lay.etcd_key, lay.ca_crt, lay.unit("etcd"),
                        lay.spec.etcd_bin):  # the binary: a new release tarball installed
                add("restart", "etcd", path)
            if path in (lay.patroni_config, lay.server_crt, lay.server_key, lay.server_pem, lay.ca_crt,
                        lay.patroni_crt, lay.patroni_key):
                add("reload", "patroni", path)
            if path == lay.unit("patroni"):
                add("restart", "patroni", path)
        if "pgbackrest" in services_of(lay.spec, node) and path in (
                lay.pgbackrest_conf, lay.server_crt, lay.server_key, lay.ca_crt, lay.unit("pgbackrest")):
            add("restart", "pgbackrest", path)
        if node.is_haproxy:
            if path in (lay.haproxy_cfg, lay.haproxy_ca):
                add("reload", "haproxy", path)
            if path in (lay.keepalived_conf, lay.keepalived_check):
                add("reload", "keepalived", path)
    return out


class Deployer:
    """One `pgha deploy` run."""

    def __init__(self, target: ServerTarget, reporter: Reporter | None = None,
                 limit: tuple[str, ...] = (), port_check: bool = True,
                 prober: Prober | None = None) -> None:
        spec = target.spec
        if spec.deploy is None:
            raise UsageError("the spec has no `deploy:` section: it describes the lab, not servers",
                             hint="add `deploy:` (packages, ssh) to deploy to servers; see `pgha spec schema`")
        self.spec, self.target, self.t = spec, target, target.transport
        self.reporter = reporter or Reporter()
        self.selected = tuple(spec.node(n) for n in limit) if limit else spec.nodes
        self.orch = Orchestrator(spec, self.t, self.reporter, prober=prober)
        self.port_check = port_check

    # -- facts and plan ------------------------------------------------------------------------
    def facts(self) -> dict[str, ServerFacts]:
        def one(node: Node) -> ServerFacts:
            pf = packages.facts(self.t, node)
            tz = self.t.shell(node, "readlink /etc/localtime | sed 's|.*/zoneinfo/||'").stdout.strip()
            states = self.t.service_states(node, services_of(self.spec, node))
            formed = node.is_postgres and self.t.run(
                node, ["test", "-d", f"{self.spec.paths.etcd_data}/member"]).ok
            return ServerFacts(node, pf, tz, states, formed)

        return {f.node.name: f for f in self.t.parallel(self.selected, one)}

    def plans(self, etcd_state: ClusterState) -> dict[str, NodePlan]:
        """The target's plan of every server (PKI and secrets created first if missing)."""
        self.target.ensure_material()
        return {p.node.name: p for p in self.target.plans(etcd_state)}

    def check_release(self, facts: dict[str, ServerFacts]) -> None:
        """The PGDG source is written for ``deploy.release``: a server of it running another is refused."""
        assert self.spec.deploy is not None
        want = self.spec.deploy.release
        wrong = [f"{f.node.name} runs {f.packages.codename or 'an unknown release'}" for f in facts.values()
                 if uses_pgdg_source(self.spec, f.node) and f.packages.codename != want]
        if wrong:
            raise UsageError(f"deploy.release is {want}, but " + ", ".join(wrong),
                             hint="set deploy.release to the servers' release (the PGDG source is written for it)")

    def etcd_state(self, facts: dict[str, ServerFacts]) -> ClusterState:
        pg = [f for f in facts.values() if f.node.is_postgres]
        return "existing" if pg and all(f.etcd_formed for f in pg) else "new"

    # -- the diff --------------------------------------------------------------------------------
    def diff(self, facts: dict[str, ServerFacts], plans: dict[str, NodePlan]) -> tuple[list[Change],
                                                                                   dict[str, list[str]]]:
        """Everything that differs, and per node the paths that do (for the reactions)."""
        changes: list[Change] = []
        tz = self.spec.deploy.timezone if self.spec.deploy else None

        def one(node: Node) -> list[FileChange]:
            plan = plans[node.name]
            return self.t.sync_entries(node, plan.entries, check=True)

        file_changes = dict(zip([n.name for n in self.selected], self.t.parallel(self.selected, one), strict=True))
        paths: dict[str, list[str]] = {}
        for node in self.selected:
            f = facts[node.name]
            if f.packages.missing:
                changes.append(Change(node.name, "packages", "install " + " ".join(f.packages.missing)))
            if not f.packages.patroni_ok:
                changes.append(Change(node.name, "packages", f"Patroni virtualenv {self.spec.paths.patroni_venv}"))
            tarball = sources.etcd_tarball(self.spec) if node.is_postgres else None
            if tarball and not f.packages.etcd_ok:
                changes.append(Change(node.name, "packages", f"etcd {tarball.version} from {tarball.path.name} "
                                                             f"into {self.spec.etcd_bin.rsplit('/', 1)[0]}"))
            if tz and f.timezone != tz:
                changes.append(Change(node.name, "timezone", f"{f.timezone or 'unset'} -> {tz}"))
            plan = plans[node.name]
            contents = {e.path: e.content for e in plan.files}
            links = {e.path for e in plan.links}
            for c in file_changes[node.name]:
                kind = "file" if c.path in contents else "link" if c.path in links else "dir"
                changes.append(Change(node.name, kind, f"{c.path} ({', '.join(c.changes)})",
                                      file_diff(c, contents.get(c.path))))
            paths[node.name] = [c.path for c in file_changes[node.name]]
            if not f.packages.etcd_ok:
                paths[node.name].append(self.spec.etcd_bin)  # a running etcd restarts onto the new binary
        return changes, paths

    def service_changes(self, facts: dict[str, ServerFacts], plans: dict[str, NodePlan],
                        paths: dict[str, list[str]]) -> list[Change]:
        out = []
        for node in self.selected:
            f = facts[node.name]
            down = [s for s in services_of(self.spec, node) if not f.services[s].running]
            for action, service, because in reactions(node, plans[node.name], paths[node.name]):
                if action == "daemon-reload":
                    out.append(Change(node.name, action, f"systemd units ({because})"))
                elif service not in down:
                    out.append(Change(node.name, action, f"{service} ({because} changed)"))
            out += [Change(node.name, "start", s) for s in down]
        return out

    # -- apply -----------------------------------------------------------------------------------
    def run(self, dry_run: bool = False, check: bool = True) -> DeployResult:
        t0 = time.monotonic()
        result = DeployResult(dry_run)
        with self.orch.step("facts from the servers (SSH)"):
            facts = self.facts()
            self.check_release(facts)
            plans = self.plans(self.etcd_state(facts))
            file_diffs, paths = self.diff(facts, plans)
            result.changes = file_diffs + self.service_changes(facts, plans, paths)
        if self.port_check:
            with self.orch.step("ports between the nodes (the seed's section 2)"):
                result.ports = check_ports(self.spec, self.t, self.selected)
                if not result.ports.passed and not dry_run:
                    raise result.ports.error()  # before anything is installed or started
        if dry_run or not result.changes:
            result.seconds = time.monotonic() - t0
            if check and not dry_run:
                result.verify = self.verify()
            return result
        fresh = not any(s.running for f in facts.values() for s in f.services.values())
        if fresh and len(self.selected) != len(self.spec.nodes):
            raise UsageError("nothing runs yet: the first deployment needs every node (drop --limit)")
        self.install(facts, plans)
        with self.orch.step("users, certificates, configs and units"):
            self.t.parallel(self.selected, lambda n: self.t.apply(plans[n.name]))
            self.t.install_services([plans[n.name] for n in self.selected])
        if fresh:
            self.orch.start_backup_servers()
            self.orch.start_etcd()
            self.orch.start_patroni()
            self.orch.ensure_stanza(list(plans.values()))
            self.orch.set_etcd_state("existing", list(plans.values()))
            self.orch.start_proxies()
            self.orch.etcd_leader_off()
            self.orch.start_monitoring(self.spec.nodes)
        else:
            self.converge(facts, plans, paths)
            self.orch.ensure_roles()  # a cluster bootstrapped before pgha made them
            self.orch.ensure_stanza(list(plans.values()))  # idempotent; a backup node added later gets it
        result.seconds = time.monotonic() - t0
        if check:
            result.verify = self.verify()
        return result

    def install(self, facts: dict[str, ServerFacts], plans: dict[str, NodePlan]) -> None:
        assert self.spec.deploy is not None
        need = [f for f in facts.values() if not f.packages.complete]
        tz = self.spec.deploy.timezone
        if need:
            with self.orch.step(f"packages on {', '.join(f.node.name for f in need)} ({self.spec.deploy.packages})"):
                tars: dict[str, tuple[bytes, str]] = {}
                if self.spec.deploy.packages == "bundle":
                    bundle = Bundle(self.spec.bundle_dir)
                    if not bundle.exists(self.spec):
                        raise UsageError(f"no package bundle in {bundle.dir}",
                                         hint=f"build it: {pgha_command('bundle', 'build')}")
                    if not bundle.built_for(self.spec):
                        raise UsageError(f"the package bundle in {bundle.dir} has PostgreSQL from elsewhere than "
                                         "deploy.postgresql says",
                                         hint=f"rebuild it: {pgha_command('bundle', 'build')}")
                    tars = {r: (bundle.verified_tar(r), bundle.manifest_id(r)) for r in ROLES
                            if any(f.node.role.value == r for f in need)}

                def one(f: ServerFacts) -> None:
                    if tars:
                        packages.ship_bundle(self.t, f.node, *tars[f.node.role.value])
                    packages.install(self.t, f.node, f.packages, plans[f.node.name].apt_sources)

                self.t.parallel(need, one)
        if tz:
            wrong = [f.node for f in facts.values() if f.timezone != tz]
            if wrong:
                with self.orch.step(f"time zone {tz}"):
                    self.t.parallel(wrong, lambda n: self.t.check(
                        n, ["sh", "-c", 'test -e /usr/share/zoneinfo/"$1" && ln -sf /usr/share/zoneinfo/"$1" '
                                        '/etc/localtime && echo "$1" > /etc/timezone', "-", tz], f"time zone {tz}"))

    def converge(self, facts: dict[str, ServerFacts], plans: dict[str, NodePlan], paths: dict[str, list[str]]) -> None:
        """A running cluster: only what the changes need, in the seed's order, one etcd at a time."""
        o = self.orch
        todo = {n.name: reactions(n, plans[n.name], paths[n.name]) for n in self.selected}
        for node in self.selected:
            if any(a == "daemon-reload" for a, _, _ in todo[node.name]):
                self.t.check(node, ["systemctl", "daemon-reload"], "systemctl daemon-reload")
        down = {n.name: [s for s in services_of(self.spec, n) if not facts[n.name].services[s].running]
                for n in self.selected}
        pg = [n for n in self.selected if n.is_postgres]
        ha = [n for n in self.selected if n.is_haproxy]
        for node in self.selected:  # pgBackRest's servers: before Patroni, whose archiving needs them
            if "pgbackrest" in down[node.name]:
                with o.step(f"start pgbackrest on {node.name}"):
                    self.t.start(node, "pgbackrest")
            elif ("restart", "pgbackrest") in [(a, s) for a, s, _ in todo[node.name]]:
                with o.step(f"restart pgbackrest on {node.name}"):
                    self.t.restart(node, "pgbackrest")
        for node in pg:
            if ("restart", "etcd") in [(a, s) for a, s, _ in todo[node.name]] and "etcd" not in down[node.name]:
                with o.step(f"restart etcd on {node.name}"):
                    self.t.restart(node, "etcd")
                    o.wait(f"restart etcd on {node.name}", o.etcd_healthy, 60, "etcd", (node,))
        self._start_down([n for n in pg if "etcd" in down[n.name]], "etcd", "etcd health", o.etcd_healthy, 60)
        if any(("restart", "etcd") in [(a, s) for a, s, _ in todo[n.name]] or "etcd" in down[n.name] for n in pg):
            o.etcd_leader_off()  # a restart may have handed etcd's leadership to the Patroni leader's node
        for node in pg:
            for action, service, _ in todo[node.name]:
                if service == "patroni" and "patroni" not in down[node.name]:
                    with o.step(f"{action} Patroni on {node.name}"):
                        (self.t.reload if action == "reload" else self.t.restart)(node, "patroni")
        starting = [n for n in pg if "patroni" in down[n.name]]
        if starting or any(s == "patroni" and a == "restart" for n in pg for a, s, _ in todo[n.name]):
            name = f"Patroni on {', '.join(n.name for n in starting) or 'the restarted nodes'}, wait for streaming"
            with o.step(name):
                for n in starting:
                    self.t.start(n, "patroni")
                o.wait(name, o.replicas_streaming, 120, "patroni",
                       tuple(starting))
        if pg:
            # After Patroni's reload: a cluster deployed before etcd auth gets Patroni's password first.
            o.ensure_etcd_auth()
        for service in ("haproxy", "keepalived"):
            for node in ha:
                if service in down[node.name]:
                    continue
                for _action, s, _ in todo[node.name]:
                    if s == service:
                        with o.step(f"reload {service} on {node.name}"):
                            self.t.reload(node, service)
        self._start_down([n for n in ha if "haproxy" in down[n.name]], "haproxy", "HAProxy routes",
                         o.routes_to_leader, 30)
        self._start_down([n for n in ha if "keepalived" in down[n.name]], "keepalived", "the VIP answers",
                         o.vip_answers, 30)
        for node in self.selected:
            for service in services_of(self.spec, node):
                if service not in monitoring.SERVICE_BUILDERS:
                    continue
                if service in down[node.name]:
                    with o.step(f"start {service} on {node.name}"):
                        self.t.start(node, service)
                elif ("restart", service) in [(a, s) for a, s, _ in todo[node.name]]:
                    with o.step(f"restart {service} on {node.name}"):
                        self.t.restart(node, service)

    def _start_down(self, nodes: list[Node], service: str, outcome: str,
                    check: Callable[[], tuple[bool, str]], timeout: float) -> None:
        """Start a service where it is down, then wait for what it brings (seed order, one step)."""
        if not nodes:
            return
        with self.orch.step(f"start {service} on {', '.join(n.name for n in nodes)}"):
            for n in nodes:
                self.t.start(n, service)
            self.orch.wait(outcome, check, timeout, service, tuple(nodes))

    def verify(self) -> VerifyReport:
        with self.orch.step("verify"):
            return verify(self.spec, Credentials.of(self.spec), self.t)


def deploy(spec: ClusterSpec, *, dry_run: bool = False, limit: tuple[str, ...] = (), check: bool = True,
           reporter: Reporter | None = None, port_check: bool = True) -> DeployResult:
    """Plan, diff and (unless ``dry_run``) apply the spec to its servers; see the module docstring."""
    with ServerTarget(spec) as target:
        return Deployer(target, reporter, limit, port_check).run(dry_run=dry_run, check=check)
