"""The config file that lets the real patronictl run from the operator's machine (`pgha ctl`)."""

from __future__ import annotations

from pathlib import Path

from pgha.layout import StateLayout
from pgha.pki import CA_NAME, PATRONI_NAME, cert_paths
from pgha.render.patroni import ctl_config
from pgha.secrets import load_secrets, write_atomic
from pgha.spec import ClusterSpec


def config_file(spec: ClusterSpec) -> Path:
    state = StateLayout(spec.state_dir)
    (ca, _), (crt, key) = cert_paths(state, CA_NAME), cert_paths(state, PATRONI_NAME)
    text = ctl_config(spec, str(ca), str(crt), str(key), load_secrets(state))
    path = state.root / "patronictl.yml"
    write_atomic(path, text.encode(), 0o600)
    return path
