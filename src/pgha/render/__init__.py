"""Pure rendering: spec (and a node's layout) in, file contents out. One module per engine.

YAML configs (Patroni) are built as dicts and dumped; line formats (haproxy.cfg, keepalived.conf,
systemd units, etcd's env file) are small templates filled strictly: a missing variable is an error.
Every engine's configuration is rendered here: etcd, Patroni (and through it PostgreSQL and pg_hba),
patronictl, HAProxy, keepalived and its check, the systemd units and drop-ins. Files that configure the
machine around the engines are written beside the code that uses them: the lab's supervisord programs
(lab/), apt sources and systemd-tmpfiles for servers (deploy/), the spec and the secrets.
"""

from __future__ import annotations

from importlib import resources
from string import Template


def fill(template_name: str, **values: object) -> str:
    """Fill ``templates/<template_name>``; raises KeyError on any variable left undefined."""
    text = resources.files("pgha.render").joinpath("templates", template_name).read_text()
    return Template(text).substitute({k: str(v) for k, v in values.items()})
