"""`pgha render`: every node's plan on real servers — exactly what `pgha deploy` installs — written as a
tree DIR/<node>/<absolute path>, plus MANIFEST.tsv with each entry's owner, group, mode and ACL."""

from __future__ import annotations

import os
from pathlib import Path

from pgha.target import Target

MANIFEST_HEADER = "# node\tpath\towner\tgroup\tmode\tacl\tkind"


def write_tree(target: Target, out: Path) -> dict[str, int]:
    """Write the directories, files and links; owners are recorded in MANIFEST.tsv (the operator's user
    may not have them). Creates the PKI and secrets if missing. Returns the number of files per node."""
    target.ensure_material()
    manifest = [MANIFEST_HEADER]
    counts: dict[str, int] = {}
    for plan in target.plans():
        base = out / plan.node.name

        def at(path: str, base: Path = base) -> Path:
            return base / path.lstrip("/")

        for d in plan.dirs:
            at(d.path).mkdir(parents=True, exist_ok=True)
            os.chmod(at(d.path), d.mode)
            manifest.append(f"{plan.node.name}\t{d.path}\t{d.owner}\t{d.group}\t{d.mode:04o}\t{','.join(d.acl)}\tdir")
        for f in plan.files:
            at(f.path).parent.mkdir(parents=True, exist_ok=True)
            at(f.path).write_bytes(f.content)
            os.chmod(at(f.path), f.mode)
            manifest.append(f"{plan.node.name}\t{f.path}\t{f.owner}\t{f.group}\t{f.mode:04o}\t{','.join(f.acl)}\tfile")
        for link in plan.links:
            at(link.path).parent.mkdir(parents=True, exist_ok=True)
            at(link.path).unlink(missing_ok=True)
            at(link.path).symlink_to(link.target)
            manifest.append(f"{plan.node.name}\t{link.path}\troot\troot\t0777\t\tlink {link.target}")
        counts[plan.node.name] = len(plan.files)
    (out / "MANIFEST.tsv").write_text("\n".join(manifest) + "\n")
    return counts
