"""`pgha render`: every node's plan on real servers — exactly what `pgha deploy` installs — written as a
tree DIR/<node>/<absolute path>, plus MANIFEST.tsv with each entry's owner, group, mode and ACL."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pgha.errors import UsageError
from pgha.target import Target

MANIFEST = "MANIFEST.tsv"
MANIFEST_HEADER = "# node\tpath\towner\tgroup\tmode\tacl\tkind"


def _fresh_folder(out: Path, force: bool) -> None:
    """``out`` empty and private (0700): secrets go in it. An earlier render's output is replaced only
    with ``force``; a folder pgha did not write is never emptied."""
    if out.is_symlink():
        raise UsageError(f"{out} is a symbolic link: refusing to write through it", hint="name a real folder")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise UsageError(f"{out} is not empty", hint="name a new folder, or pass --force to replace an "
                                                         "earlier `pgha render` output there")
        if not (out / MANIFEST).is_file():
            raise UsageError(f"{out} holds no {MANIFEST}: not an earlier `pgha render` output, so pgha will not "
                             "empty it", hint="name a new folder")
        for entry in out.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(out, 0o700)  # an existing folder too; mkdir's mode is filtered by the umask


def _create(path: Path, content: bytes, mode: int) -> None:
    """A new file with its final mode from the first byte; never through a symlink, never over a file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)
        f.write(content)


def write_tree(target: Target, out: Path, force: bool = False) -> dict[str, int]:
    """Write the directories, files and links; owners are recorded in MANIFEST.tsv (the operator's user
    may not have them). Creates the PKI and secrets if missing. Returns the number of files per node."""
    target.ensure_material()
    plans = target.plans()
    _fresh_folder(out, force)
    manifest = [MANIFEST_HEADER]
    counts: dict[str, int] = {}
    for plan in plans:
        base = out / plan.node.name

        def at(path: str, base: Path = base) -> Path:
            return base / path.lstrip("/")

        for d in plan.dirs:
            at(d.path).mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(at(d.path), d.mode)
            manifest.append(f"{plan.node.name}\t{d.path}\t{d.owner}\t{d.group}\t{d.mode:04o}\t{','.join(d.acl)}\tdir")
        for f in plan.files:
            at(f.path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _create(at(f.path), f.content, f.mode)
            manifest.append(f"{plan.node.name}\t{f.path}\t{f.owner}\t{f.group}\t{f.mode:04o}\t{','.join(f.acl)}\tfile")
        for link in plan.links:
            at(link.path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            at(link.path).symlink_to(link.target)
            manifest.append(f"{plan.node.name}\t{link.path}\troot\troot\t0777\t\tlink {link.target}")
        counts[plan.node.name] = len(plan.files)
    _create(out / MANIFEST, ("\n".join(manifest) + "\n").encode(), 0o600)
    return counts
