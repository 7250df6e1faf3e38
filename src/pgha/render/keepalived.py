"""keepalived.conf and its HAProxy check script (the seed's section 10)."""

from __future__ import annotations

import shlex

from pgha.layout import NodeLayout
from pgha.render import fill


def render_conf(layout: NodeLayout, auth_pass: str) -> str:
    spec, node = layout.spec, layout.node
    priority = spec.priority_of(node)
    top = max(spec.priority_of(n) for n in spec.haproxy_nodes)
    # nopreempt only works from state BACKUP: every node starts as BACKUP then.
    state = "MASTER" if priority == top and not spec.vip.nopreempt else "BACKUP"
    return fill(
        "keepalived.conf",
        cluster=spec.name,
        node=node.name,
        check_script=layout.keepalived_check,
        interval=spec.keepalived.interval,
        timeout=spec.keepalived.timeout,
        fall=spec.keepalived.fall,
        rise=spec.keepalived.rise,
        state=state,
        interface=spec.vip.interface,
        unicast=_unicast(layout),
        router_id=spec.vip.router_id,
        priority=priority,
        advert_int=spec.vip.advert_int,
        nopreempt="    nopreempt\n" if spec.vip.nopreempt else "",
        auth_pass=auth_pass[:8],
        vip=spec.vip.address,
        prefix=spec.vip.prefix,
    )


def _unicast(layout: NodeLayout) -> str:
    """Adverts sent to the other HAProxy nodes only, not multicast to the whole segment (README, Security)."""
    peers = [n.address for n in layout.spec.haproxy_nodes if n != layout.node]
    if not peers:
        return ""
    return (f"    unicast_src_ip {layout.node.address}\n    unicast_peer {{\n"
            + "".join(f"        {a}\n" for a in peers) + "    }\n")


def render_check(layout: NodeLayout) -> str:
    # Typed integers today; quoted anyway: nothing reaches a root-run shell unquoted.
    return fill("check_haproxy.sh", monitor_port=shlex.quote(str(layout.spec.ports.haproxy_monitor)),
                timeout=shlex.quote(str(layout.spec.keepalived.timeout)))
