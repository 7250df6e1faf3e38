"""systemd units from :class:`pgha.service.Service` (the seed's etcd unit, Patroni's unit)."""

from __future__ import annotations

from pgha.render import fill
from pgha.service import Service


def render_unit(service: Service, cluster: str) -> str:
    optional = "".join(f'Environment="{k}={v}"\n' for k, v in service.environment)
    optional += f"EnvironmentFile={service.env_file}\n" if service.env_file else ""
    optional += f"WorkingDirectory={service.working_dir}\n" if service.working_dir else ""
    return fill(
        "systemd.service",
        cluster=cluster,
        description=service.description,
        after="".join(f" {a}.service" for a in service.after),
        type="notify" if service.notify else "simple",
        user=service.user,
        group=service.group,
        optional=optional,
        exec_start=" ".join(service.argv),
        reload=f"ExecReload=/bin/kill -s {service.reload_signal} $MAINPID\n" if service.reload_signal else "",
        kill_mode=service.kill_mode,
        restart=service.restart,
        restart_sec=f"{service.restart_sec:g}s",
        timeout_stop=f"{service.stop_timeout}s",
        limit_nofile=service.limit_nofile,
    )
