"""`pgha render`: every node's plan written as a tree DIR/<node>/<absolute path>, plus a manifest."""

from __future__ import annotations

import os
from pathlib import Path

from pgha.layout import StateLayout
from pgha.pki import ensure_pki
from pgha.plan import CertFiles, NodePlan, build
from pgha.secrets import ensure_secrets
from pgha.spec import ClusterSpec


def server_plans(spec: ClusterSpec, state: StateLayout | None = None) -> list[NodePlan]:
    """The plans of every node as on real servers (no path prefix); creates PKI/secrets if missing."""
    state = state or StateLayout(spec.state_dir)
    ensure_pki(spec, state)
    secrets = ensure_secrets(state)
    return [build(spec, n, CertFiles.load(state, spec, n), secrets) for n in spec.nodes]


def write_tree(spec: ClusterSpec, out: Path, state: StateLayout | None = None) -> dict[str, int]:
    """Write the files; owners are recorded in MANIFEST.tsv (the operator's user may not have them)."""
    manifest = ["# node\tpath\towner\tgroup\tmode\tacl"]
    counts: dict[str, int] = {}
    for plan in server_plans(spec, state):
        for f in plan.files:
            target = out / plan.node.name / f.path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.content)
            os.chmod(target, f.mode)
            manifest.append(f"{plan.node.name}\t{f.path}\t{f.owner}\t{f.group}\t{f.mode:04o}\t{','.join(f.acl)}")
        counts[plan.node.name] = len(plan.files)
    (out / "MANIFEST.tsv").write_text("\n".join(manifest) + "\n")
    return counts
