"""Real Debian 12 machines booted with systemd-nspawn, for testing `pgha deploy` (see LAB-NOTES.md).

A base root filesystem is built once by debootstrap and cached outside the repo; each machine gets an
overlayfs over it, a fresh machine-id, its own SSH host key (pinned in the test spec), root's
authorized_keys and a static address on a bridge of this project's own subnet, with no default route
and no forwarding: nothing leaves this machine. Everything created is recorded and removed by
:meth:`Machines.teardown` — machines powered off by pid, overlays unmounted, bridge deleted — which the
test fixture runs also on failure.

Usable by hand as well: ``python tests/deploy/nspawn.py up|down``.

Two sets of machines can run side by side, each with its own subnet, bridge, name prefix and work
directory: ``PGHA_NSPAWN_SUBNET=10.203.3 PGHA_NSPAWN_BRIDGE=pgha-dep1 PGHA_NSPAWN_PREFIX=b
PGHA_NSPAWN_RUN=b-ci pytest tests/deploy`` (defaults: 10.203.2, pgha-dep0, none, ci).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

BASE = Path(os.environ.get("PGHA_NSPAWN_BASE", "/var/cache/pgha/nspawn-base"))
WORK = Path(os.environ.get("PGHA_NSPAWN_WORK", "/var/lib/pgha-nspawn"))
BRIDGE = os.environ.get("PGHA_NSPAWN_BRIDGE", "pgha-dep0")
SUBNET = os.environ.get("PGHA_NSPAWN_SUBNET", "10.203.2")
"""This test's own /24 (others use 10.203.0.0/24 and 10.203.1.0/24); the first three octets."""
PREFIX = os.environ.get("PGHA_NSPAWN_PREFIX", "")
"""Prepended to the machines' names (nspawn -M, cgroups, veths), so two sets can run side by side."""
RUN = os.environ.get("PGHA_NSPAWN_RUN", "ci")
"""The work directory of the tests' machines: :data:`WORK`/RUN."""
HOST_ADDRESS = f"{SUBNET}.1"
if not re.fullmatch(r"(\d{1,3}\.){2}\d{1,3}", SUBNET) or len(BRIDGE) > 15:
    raise ValueError(f"PGHA_NSPAWN_SUBNET={SUBNET!r} must be three octets (e.g. 10.203.3), "
                     f"PGHA_NSPAWN_BRIDGE={BRIDGE!r} at most 15 characters")
BASE_PACKAGES = "systemd,systemd-sysv,dbus,openssh-server,iproute2,python3,sudo"
CGROUP_HIERARCHIES = ("systemd", "unified")


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def debian_mirror() -> str:
    """The mirror this machine's apt already uses (LAB-NOTES: read it from sources.list.d)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*")) + [Path("/etc/apt/sources.list")]:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if line.startswith("URIs:") and len(words) > 1 and "security" not in words[1]:
                return words[1]
            if line.startswith("deb ") and len(words) > 2 and "security" not in line:
                return next(w for w in words[1:] if w.startswith("http"))
    return "http://deb.debian.org/debian"


def ensure_base() -> Path:
    """debootstrap the base root filesystem once (~50 s), cached in :data:`BASE`."""
    if (BASE / "usr/sbin/sshd").exists():
        return BASE
    tmp = BASE.with_name(BASE.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", str(tmp),
                           debian_mirror()], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"debootstrap failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    tmp.rename(BASE)
    return BASE


@dataclass
class Machine:
    name: str
    address: str
    dir: Path
    host_key_public: str = ""
    pid: int | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def machine(self) -> str:
        """The machine's name for nspawn, cgroups and its veth (the node's name, prefixed)."""
        return PREFIX + self.name

    @property
    def veth(self) -> str:
        """The host side of its network link, as nspawn names it (fits, see :class:`Machines`)."""
        return f"vb-{self.machine}"

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def upper(self) -> Path:
        return self.dir / "upper"


class Machines:
    """A set of nspawn machines on one bridge; ``teardown`` leaves nothing behind."""

    def __init__(self, names_addresses: list[tuple[str, str]], run: str = RUN) -> None:
        self.dir = WORK / run
        self.machines = {name: Machine(name, addr, self.dir / name) for name, addr in names_addresses}
        for m in self.machines.values():  # longer, nspawn hashes the veth's name: teardown could not find it
            if len(m.veth) > 15:
                raise ValueError(f"machine name {m.machine!r} too long for its veth {m.veth!r} (15 characters): "
                                 f"shorten PGHA_NSPAWN_PREFIX={PREFIX!r}")
        self.client_key = self.dir / "id_ed25519"

    # -- create ------------------------------------------------------------------------------------
    def up(self) -> None:
        ensure_base()
        self.teardown()  # a previous run killed half-way left its own things: remove them first
        self.dir.mkdir(parents=True)
        key = asyncssh.generate_private_key("ssh-ed25519")
        key.write_private_key(str(self.client_key))
        self.client_key.chmod(0o600)
        pub = key.export_public_key().decode().strip()
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{HOST_ADDRESS}/24", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        for m in self.machines.values():
            self._prepare(m, pub)
        for m in self.machines.values():
            self.power_on(m.name)
        self.wait_ssh(list(self.machines), timeout=60)

    def _prepare(self, m: Machine, authorized: str) -> None:
        for d in (m.upper, m.dir / "work", m.root):
            d.mkdir(parents=True)
        sh("mount", "-t", "overlay", "overlay", "-o",
           f"lowerdir={BASE},upperdir={m.upper},workdir={m.dir / 'work'}", str(m.root))
        r = m.root
        (r / "etc/hostname").write_text(m.name + "\n")
        (r / "etc/hosts").write_text(f"127.0.0.1 localhost\n{m.address} {m.name}\n")
        (r / "etc/machine-id").write_text(secrets.token_hex(16) + "\n")
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        host_key.write_private_key(str(r / "etc/ssh/ssh_host_ed25519_key"))
        (r / "etc/ssh/ssh_host_ed25519_key").chmod(0o600)
        m.host_key_public = host_key.export_public_key().decode().strip()
        (r / "etc/ssh/ssh_host_ed25519_key.pub").write_text(m.host_key_public + "\n")
        (r / "etc/ssh/sshd_config.d/pgha-test.conf").write_text(
            "HostKey /etc/ssh/ssh_host_ed25519_key\nPermitRootLogin prohibit-password\nUseDNS no\n")
        (r / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
        (r / "root/.ssh/authorized_keys").write_text(authorized + "\n")
        (r / "root/.ssh/authorized_keys").chmod(0o600)
        (r / "etc/systemd/network/10-pgha.network").write_text(
            f"[Match]\nName=host0\n\n[Network]\nAddress={m.address}/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n")
        wants = r / "etc/systemd/system"
        for target, unit in (("multi-user.target.wants", "systemd-networkd.service"),
                             ("sockets.target.wants", "systemd-networkd.socket")):
            (wants / target).mkdir(exist_ok=True)
            link = wants / target / unit
            if not link.exists():
                link.symlink_to(f"/lib/systemd/system/{unit}")
        # No apt run of its own behind the deployment's back (a real server's admin decides that).
        for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
            (wants / "timers.target.wants" / timer).unlink(missing_ok=True)
            mask = wants / timer
            mask.unlink(missing_ok=True)
            mask.symlink_to("/dev/null")

    # -- power ---------------------------------------------------------------------------------------
    def _cgroup_dirs(self, name: str) -> list[Path]:
        machine = self.machines[name].machine
        return [Path("/sys/fs/cgroup") / h / "pgha-nspawn" / machine for h in CGROUP_HIERARCHIES
                if (Path("/sys/fs/cgroup") / h).is_dir()]

    def power_on(self, name: str) -> None:
        m = self.machines[name]
        dirs = self._cgroup_dirs(name)
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)

        def own_cgroup() -> None:  # parallel boots in one cgroup fail with status=219/CGROUP
            for d in dirs:
                (d / "cgroup.procs").write_text(str(os.getpid()))

        log = open(self.dir / f"{name}.console.log", "ab")  # noqa: SIM115 - handed to the child
        m.proc = subprocess.Popen(
            ["systemd-nspawn", "-b", "-D", str(m.root), "-M", m.machine, "--register=no", "--keep-unit",
             f"--network-bridge={BRIDGE}", "--resolv-conf=off", "--timezone=off", "--console=passive"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=own_cgroup)
        m.pid = m.proc.pid
        (self.dir / f"{name}.pid").write_text(str(m.pid))
        log.close()

    def machine_pids(self, name: str) -> set[int]:
        """Every process of the machine: its whole cgroup subtree (nspawn, the guest's init, its services)."""
        pids: set[int] = set()
        for d in self._cgroup_dirs(name):
            for procs in d.rglob("cgroup.procs") if d.is_dir() else []:
                with contextlib.suppress(OSError):
                    pids.update(int(w) for w in procs.read_text().split())
        return pids

    def power_cut(self, name: str) -> None:
        """Every process of the machine SIGKILLed at once, like a pulled power cord.

        SIGKILL to systemd-nspawn alone is not one here: the guest's init (and with it the whole
        machine, network included) outlives it. So the guest's init is killed — the kernel then kills
        every process of its PID namespace — then nspawn, then anything left in the machine's cgroups.
        """
        m = self.machines[name]
        if m.pid is not None:
            for child in sh("pgrep", "-P", str(m.pid), check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(child), signal.SIGKILL)
        self._end(name, signal.SIGKILL, timeout=10)

    def power_off(self, name: str, timeout: float = 20) -> None:
        """SIGTERM to nspawn: a clean shutdown of the guest; a power cut if it takes too long."""
        if not self._end(name, signal.SIGTERM, timeout):
            self.power_cut(name)

    def _end(self, name: str, sig: signal.Signals, timeout: float) -> bool:
        """Signal nspawn, wait for it, then make sure no process of the machine and no veth remain."""
        m = self.machines[name]
        pid = m.pid
        if pid is None:
            pidfile = self.dir / f"{name}.pid"
            pid = int(pidfile.read_text()) if pidfile.exists() else None
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if (m.proc.poll() is not None) if m.proc is not None else not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)
            else:
                return False
        # Whatever is left in the machine's cgroups is ours: killed by pid, until none is left.
        deadline = time.monotonic() + 10
        while (pids := self.machine_pids(name)) and time.monotonic() < deadline:
            for p in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            time.sleep(0.1)
        # The veth goes with the machine's network namespace, which the kernel frees lazily (seconds
        # under load): a veth left behind would make the next boot of this machine fail. Ours: deleted.
        deadline = time.monotonic() + 5
        while self._veth_exists(m) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._veth_exists(m):
            sh("ip", "link", "del", m.veth, check=False)
            deadline = time.monotonic() + 10
            while self._veth_exists(m) and time.monotonic() < deadline:
                time.sleep(0.1)
        m.pid, m.proc = None, None
        (self.dir / f"{name}.pid").unlink(missing_ok=True)
        return True

    @staticmethod
    def _veth_exists(m: Machine) -> bool:
        return sh("ip", "link", "show", m.veth, check=False).returncode == 0

    def wait_ssh(self, names: list[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        pending = set(names)
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                try:
                    with socket.create_connection((self.machines[name].address, 22), timeout=0.5) as s:
                        s.settimeout(1)
                        if s.recv(4).startswith(b"SSH"):
                            pending.discard(name)
                except OSError:
                    pass
            time.sleep(0.2)
        if pending:
            raise RuntimeError(f"no SSH on {sorted(pending)} after {timeout:g} s (see {self.dir}/*.console.log)")

    def ssh(self, name: str, command: str) -> str:
        """Run a command on a machine as root (for tests' own checks)."""
        m = self.machines[name]

        async def go() -> str:
            async with asyncssh.connect(m.address, username="root", client_keys=[str(self.client_key)],
                                        known_hosts=([asyncssh.import_public_key(m.host_key_public)], [], []),
                                        agent_path=None) as conn:
                res = await conn.run(command, check=False)
                return str(res.stdout)

        return asyncio.run(go())

    # -- destroy -------------------------------------------------------------------------------------
    def teardown(self) -> list[str]:
        """Power every machine off (by pid), unmount the overlays, delete the bridge and the work dir."""
        done = []
        for name in self.machines:
            pidfile = self.dir / f"{name}.pid"
            if self.machines[name].pid or pidfile.exists() or self.machine_pids(name):
                self.power_off(name)
                done.append(f"powered off {name}")
        for name, m in self.machines.items():
            if os.path.ismount(m.root):
                sh("umount", str(m.root), check=False)
                if os.path.ismount(m.root):
                    time.sleep(1)
                    sh("umount", "-l", str(m.root), check=False)
                done.append(f"unmounted {m.root}")
            for d in self._cgroup_dirs(name):
                for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                    with contextlib.suppress(OSError):
                        sub.rmdir()
                with contextlib.suppress(OSError):
                    d.rmdir()
        for h in CGROUP_HIERARCHIES:
            with contextlib.suppress(OSError):
                (Path("/sys/fs/cgroup") / h / "pgha-nspawn").rmdir()
        if sh("ip", "link", "show", BRIDGE, check=False).returncode == 0:
            sh("ip", "link", "del", BRIDGE, check=False)
            done.append(f"deleted bridge {BRIDGE}")
        if self.dir.exists() and not any(os.path.ismount(m.root) for m in self.machines.values()):
            shutil.rmtree(self.dir, ignore_errors=True)
            done.append(f"removed {self.dir}")
        return done

    def leftovers(self) -> list[str]:
        """What teardown should have removed and is still there (the test asserts none)."""
        out = [f"mount {m.root}" for m in self.machines.values() if os.path.ismount(m.root)]
        if sh("ip", "link", "show", BRIDGE, check=False).returncode == 0:
            out.append(f"bridge {BRIDGE}")
        out += [f"nspawn pid {m.pid}" for m in self.machines.values() if m.pid and Path(f"/proc/{m.pid}").exists()]
        out += [f"processes of {name}: {sorted(self.machine_pids(name))}" for name in self.machines
                if self.machine_pids(name)]
        out += [f"cgroup {d}" for name in self.machines for d in self._cgroup_dirs(name) if d.exists()]
        out += [f"veth {line.split()[1]}" for line in sh("ip", "-o", "link", check=False).stdout.splitlines()
                if any(m.veth in line for m in self.machines.values())]
        if self.dir.exists():
            out.append(f"directory {self.dir}")
        return out


SIX = [(f"haproxy-0{i + 1}", f"{SUBNET}.{200 + i}") for i in range(3)] + \
      [(f"postgres-0{i + 1}", f"{SUBNET}.{203 + i}") for i in range(3)]


def spec_data(ms: Machines, name: str = "pgha-deploy-ci", state_dir: str | None = None) -> dict[str, object]:
    """The spec of a cluster on these machines: SSH key, pinned host keys, offline bundle, no watchdog."""
    from pgha import spec as spec_mod

    data = spec_mod.default_data(subnet=f"{SUBNET}.0/24", name=name, profile=spec_mod.Profile.FAST)
    # the nodes these machines are (the default spec may have more roles than machines were booted for)
    data["nodes"] = [n for n in data["nodes"] if n["name"] in ms.machines]  # type: ignore[union-attr]
    for node in data["nodes"]:  # type: ignore[union-attr]
        m = ms.machines[node["name"]]
        if not m.host_key_public:
            m.host_key_public = (m.upper / "etc/ssh/ssh_host_ed25519_key.pub").read_text().strip()
        node["ssh"] = {"host_key": m.host_key_public}
    data["vip"]["interface"] = "host0"  # type: ignore[index]
    data["watchdog"] = {"mode": "off"}  # one kernel for all machines: never a watchdog (nor softdog)
    data["cluster"]["state_dir"] = state_dir or str(ms.dir / "state")  # type: ignore[index]
    data["deploy"] = {"packages": "bundle", "bundle_dir": os.environ.get("PGHA_BUNDLE_DIR",
                                                                         "/var/cache/pgha/bundle-bookworm"),
                      "timezone": "Europe/Madrid", "ssh": {"user": "root", "key_file": str(ms.client_key)}}
    return data


if __name__ == "__main__":
    ms = Machines(SIX, run=os.environ.get("PGHA_NSPAWN_RUN", "manual"))
    if sys.argv[1:] == ["up"]:
        t0 = time.monotonic()
        ms.up()
        print(f"six machines up in {time.monotonic() - t0:.1f} s; key {ms.client_key}")
        for mm in ms.machines.values():
            print(mm.name, mm.address, mm.host_key_public)
    elif sys.argv[1:] == ["spec"]:
        from pgha import spec as spec_mod

        print(spec_mod.dump(spec_data(ms)))
    elif sys.argv[1:] == ["down"]:
        print("\n".join(ms.teardown()))
