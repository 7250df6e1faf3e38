"""The lab as a whole: up (network, PKI, the lab target's plans, the seed's sequence), down, status, faults."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pgha import poll
from pgha.errors import MissingPrerequisite, PghaError, UsageError, pgha_command
from pgha.files import DirEntry
from pgha.lab.network import LabNetwork, existing_namespaces, ip
from pgha.lab.target import LabTarget
from pgha.lab.transport import NetnsTransport
from pgha.layout import StateLayout
from pgha.orchestrate import Orchestrator, Reporter, Timings
from pgha.plan import NodePlan
from pgha.spec import ClusterSpec, Node
from pgha.topology import SERVICES, services_of

FAULT_SERVICES = (*SERVICES, "postgres")


def _proc_state(pid: int) -> str:
    """The kernel's one-letter state of a process ('' when there is none)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def _running(pid: int) -> bool:
    return _proc_state(pid) not in ("", "Z", "X")


def check_prerequisites(spec: ClusterSpec) -> None:
    """Root, namespaces and the engines' binaries, with what to install when one is missing."""
    if os.geteuid() != 0:
        raise MissingPrerequisite("the lab needs root (network namespaces, system users, daemons)",
                                  hint=f"run it as root, e.g. `sudo .venv/bin/{pgha_command('lab', 'up')}`")
    needed = {
        spec.etcd_bin: "apt-get install etcd-server etcd-client",
        "/usr/sbin/haproxy": "apt-get install haproxy",
        "/usr/sbin/keepalived": "apt-get install keepalived",
        f"{spec.pg_bin_dir}/pg_ctl": f"apt-get install postgresql-{spec.postgresql.version}",
        f"{spec.paths.patroni_venv}/bin/patroni": "run scripts/bootstrap.sh (builds Patroni's virtualenv)",
        shutil.which("setfacl") or "/usr/bin/setfacl": "apt-get install acl",
        shutil.which("setpriv") or "/usr/bin/setpriv": "apt-get install util-linux",
    }
    missing = [(path, fix) for path, fix in needed.items() if not Path(path).exists()]
    if missing:
        raise MissingPrerequisite("missing: " + ", ".join(p for p, _ in missing),
                                  hint="; ".join(sorted({f for _, f in missing})))
    probe = subprocess.run(["ip", "netns", "add", "pgha-probe-ns"], capture_output=True, text=True)
    if probe.returncode != 0 and "File exists" not in probe.stderr:
        raise MissingPrerequisite(f"cannot create network namespaces: {probe.stderr.strip()}",
                                  hint="run on a Linux host (or a privileged container) as root")
    subprocess.run(["ip", "netns", "del", "pgha-probe-ns"], capture_output=True)


@dataclass(frozen=True)
class ProcessRow:
    node: str
    service: str
    state: str
    pid: int | None


class Lab:
    """One cluster's lab on this machine."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self.state = StateLayout(spec.state_dir)
        self.network = LabNetwork(spec)
        self.transport = NetnsTransport(spec, self.state)
        self.target = LabTarget(spec, self.transport, self.state)

    # -- up ---------------------------------------------------------------------------------
    def is_up(self) -> bool:
        if not self.transport.supervisor.is_running():
            return False
        return all(i.get("statename") == "RUNNING" for i in self.transport.supervisor.all_info())

    def up(self, reporter: Reporter | None = None) -> Timings:
        check_prerequisites(self.spec)
        self._check_subnet_free()
        orch = Orchestrator(self.spec, self.transport, reporter)
        with orch.step("clean up a previous or half-built lab"):
            if self.is_up():
                return orch.timings  # already running: nothing to redo
            if self.network.exists() or self.transport.supervisor.pid() or self.state.nodes.exists():
                self.down(keep_pki=True)
        with orch.step("network: bridge and namespaces"):
            self.network.create()
        with orch.step("PKI and secrets"):
            self.target.ensure_material()
            plans = self.target.plans()
            self._restrict(plans)
        return orch.bring_up(plans)

    def _restrict(self, plans: list[NodePlan]) -> None:
        """Local users see nothing of the state directory: root's alone, except that each node's root
        can be entered by the users that node's services run as (an ACL), as on its own server."""
        self.state.nodes.mkdir(parents=True, exist_ok=True)
        for d in (self.state.root, self.state.nodes):
            d.chmod(0o711)  # entered on the way to a node root; listed by root only
        for plan in plans:
            self.transport.ensure_users(plan.node, plan.users)
            self.transport.ensure_dir(plan.node, DirEntry(str(self.state.node_root(plan.node)), mode=0o700,
                                                          acl=tuple(f"u:{u}:x" for u in plan.users)))

    def _check_subnet_free(self) -> None:
        """Another lab (another cluster name) on the same subnet would fight over addresses."""
        out = ip("-o", "-4", "addr", "show", check=False).stdout
        for line in out.splitlines():
            dev = line.split()[1]
            if f" {self.spec.bridge_address}/" in line and dev != self.network.names.bridge:
                raise UsageError(f"{self.spec.bridge_address} is already used by {dev} on this machine "
                                 "(another lab?)", hint="give this lab another subnet in its spec, or "
                                                         "take the other lab down")

    # -- down -------------------------------------------------------------------------------
    def down(self, keep_data: bool = False, keep_pki: bool = False) -> list[str]:
        """Stop every process (by pid), remove namespaces and bridge, and unless kept the state."""
        done: list[str] = []
        # With the data kept, stop gracefully (clean PostgreSQL shutdown); otherwise power off at once.
        self.transport.supervisor.shutdown(timeout=60, graceful=keep_data)
        # Anything still alive in our namespaces (e.g. a postmaster orphaned by a killed Patroni). Listed
        # again until none is left: an orphaned Patroni can fork between a listing and the kills.
        killed: set[int] = set()
        for _ in range(20):
            fresh = set(self._namespace_pids()) - killed
            if not fresh:
                break
            for pid in sorted(fresh):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    done.append(f"killed pid {pid}")
            killed |= fresh
        # A killed process can take a while to exit (uninterruptible I/O on a loaded machine): wait for
        # each to be gone or a zombie, which removing the namespaces does not do.
        with contextlib.suppress(poll.TimedOut):
            poll.until("the lab's processes gone", lambda: (
                not (left := [p for p in killed if _running(p)]), f"still exiting: {sorted(left)}"), 30,
                interval=0.05)
        done += [f"pid {p} still exiting ({_proc_state(p)})" for p in sorted(killed) if _running(p)]
        done += self.network.destroy()
        if not keep_data and self.state.root.exists():
            if keep_pki:
                for sub in (self.state.nodes, self.state.supervisor, self.state.logs):
                    shutil.rmtree(sub, ignore_errors=True)
            else:
                shutil.rmtree(self.state.root, ignore_errors=True)
            done.append(f"removed {self.state.root}" + (" (kept pki/ and secrets)" if keep_pki else ""))
        return done

    def _namespace_pids(self) -> list[int]:
        pids = []
        for ns in existing_namespaces():
            if ns.startswith(self.network.names.prefix):
                proc = ip("netns", "pids", ns, check=False)
                if proc.returncode and ns in existing_namespaces():  # a listing that failed must not pass for empty
                    raise PghaError(f"cannot list the processes of namespace {ns}: {proc.stderr.strip()}")
                pids += [int(pid) for pid in proc.stdout.split()]
        return pids

    # -- status and faults ------------------------------------------------------------------
    def require_running(self) -> None:
        if not self.transport.supervisor.is_running():
            raise UsageError(f"no lab is running for cluster {self.spec.name}",
                             hint=f"start it: {pgha_command('lab', 'up')}")

    def processes(self) -> list[ProcessRow]:
        self.require_running()
        rows = []
        for info in self.transport.supervisor.all_info():
            node, _, service = info["name"].partition("--")
            running = info.get("statename") == "RUNNING"
            rows.append(ProcessRow(node, service, str(info.get("statename")).lower(),
                                   int(info["pid"]) if running else None))
            if service == "patroni":
                pm = self.postmaster_pid(self.spec.node(node))
                rows.append(ProcessRow(node, "postgres", "running" if pm else "stopped", pm))
        return rows

    def _service_node(self, node_name: str, service: str) -> Node:
        node = self.spec.node(node_name)
        if service not in FAULT_SERVICES:
            raise UsageError(f"unknown service '{service}' (one of: {', '.join(FAULT_SERVICES)})")
        runs = (*services_of(self.spec, node), "postgres") if node.is_postgres else services_of(self.spec, node)
        if service not in runs:
            raise UsageError(f"{node.name} runs no {service} (it runs {', '.join(runs)})")
        return node

    def postmaster_pid(self, node: Node) -> int | None:
        from pgha.lab.freeze import postmaster_pid

        return postmaster_pid(self.target.layout(node).pg_data)

    def kill(self, node_name: str, service: str, sig: str = "KILL") -> str:
        self.require_running()
        node = self._service_node(node_name, service)
        sig = sig.upper().removeprefix("SIG")
        if service == "postgres":
            pid = self.transport.kill_postmaster(node, self.target.layout(node).pg_data, sig)
            if pid is None:
                raise UsageError(f"no postmaster is running on {node.name}")
            return f"sent SIG{sig} to the postmaster (pid {pid}) on {node.name}"
        pid = self.transport.service_state(node, service).pid
        self.transport.kill(node, service, sig)
        return f"sent SIG{sig} to {service} (pid {pid}) on {node.name}"

    def stop(self, node_name: str, service: str) -> str:
        self.require_running()
        node = self._service_node(node_name, service)
        if service == "postgres":
            raise UsageError("postgres is managed by Patroni: stop patroni, or kill postgres")
        self.transport.stop(node, service)
        start = pgha_command("lab", "start", node.name, service)
        return f"stopped {service} on {node.name} (held down until `{start}`)"

    def start(self, node_name: str, service: str | None = None) -> str:
        """Start a service, or every service of the node (after `crash`)."""
        self.require_running()
        if service is None:
            node = self.spec.node(node_name)
            services = services_of(self.spec, node)
        else:
            node = self._service_node(node_name, service)
            if service == "postgres":
                raise UsageError("postgres is started by Patroni: start patroni")
            services = (service,)
        for s in services:
            self.transport.start(node, s)
        return f"started {', '.join(services)} on {node.name}"

    def crash(self, node_name: str) -> str:
        """A node's power cut: every service SIGKILLed at once and held down (the restart policy does
        not bring it back) until `start`. Patroni detaches the postmaster, so it is killed by its pid."""
        self.require_running()
        node = self.spec.node(node_name)
        killed = self.transport.crash_node(node, self.target.layout(node).pg_data, services_of(self.spec, node))
        return (f"{node.name} crashed: SIGKILL {', '.join(killed)}; held down until "
                f"`{pgha_command('lab', 'start', node.name)}`")

    def isolate(self, node_name: str) -> str:
        self.require_running()
        node = self.spec.node(node_name)
        self.network.isolate(node)
        return f"{node.name} is cut off the network (processes keep running)"

    def heal(self, node_name: str) -> str:
        self.require_running()
        node = self.spec.node(node_name)
        self.network.heal(node)
        return f"{node.name} is back on the network"
