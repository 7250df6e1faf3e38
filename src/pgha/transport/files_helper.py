"""The one writer of node files, directories and links, for servers and the lab alike.

:func:`sync` brings many files and directories to their content, owner, mode and ACL (links to their
target), or only reports
what it would change (``check``). On a server it runs in the server's own python3 (``python3 -c``, JSON
on stdin, one JSON list on stdout: one SSH round trip); the lab calls it in-process.

It runs as root in directories a service user may be able to write, so it never acts on a path that
could have been swapped for a symlink since it was looked at: a file is written whole to a new
temporary file (``O_EXCL|O_NOFOLLOW``, created 0600) whose owner, mode and ACL are set on the open
descriptor, then renamed over the old one (a rename replaces a symlink, it never follows it); a
directory is opened with ``O_NOFOLLOW|O_DIRECTORY`` and changed through that descriptor; a link is made
under a new name and renamed into place. ACLs are written as the ``system.posix_acl_access`` attribute
of the descriptor (what ``setfacl -m`` writes).

:func:`sync` uses nothing but the standard library and :func:`pgha.files.significant_mode_bits`,
whose source is sent with it: the program runs on the server, where pgha is not.
"""

from __future__ import annotations

import base64
import inspect
import sys
from collections.abc import Iterable
from typing import Any

from pgha.files import significant_mode_bits

MAX_OLD = 256 * 1024
"""Old contents larger than this are not sent back for diffs."""


def sync(entries: list[dict[str, Any]], check: bool) -> list[dict[str, Any]]:
    """Each entry: path, kind ("file"/"dir"), owner, group, mode, acl ("u:NAME:rx"...), content (base64).
    Returns, per entry that differs: path, changes (created/content/owner/mode/acl), old (base64, check)."""
    import base64
    import contextlib
    import grp
    import os
    import pwd
    import stat
    import struct

    xattr = "system.posix_acl_access"
    user_obj, user, group_obj, group, mask, other = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

    def ids(owner: str, grp_name: str) -> tuple[int, int] | None:
        try:
            return pwd.getpwnam(owner).pw_uid, grp.getgrnam(grp_name).gr_gid
        except KeyError:
            return None

    def bits(p: str) -> int:
        return (4 if "r" in p else 0) | (2 if "w" in p else 0) | (1 if "x" in p or "X" in p else 0)

    def named(acl: list[str]) -> dict[tuple[int, int], int] | None:
        """{(tag, uid/gid): perms} of the ACL's named entries; None when a name is unknown here."""
        out = {}
        for e in acl:
            kind, name, p = e.split(":")
            try:
                key = (user, pwd.getpwnam(name).pw_uid) if kind in ("u", "user") else (group, grp.getgrnam(name).gr_gid)
            except KeyError:
                return None
            out[key] = bits(p)
        return out

    def acl_value(mode: int, entries: dict[tuple[int, int], int]) -> bytes:
        """The attribute `setfacl -m` leaves after a chmod to ``mode``: the mask is the union of the group
        class (named entries and the owning group)."""
        group_bits = (mode >> 3) & 7
        rows = [(user_obj, (mode >> 6) & 7, 0xFFFFFFFF), (group_obj, group_bits, 0xFFFFFFFF)]
        rows += [(tag, p, i) for (tag, i), p in entries.items()]
        m = group_bits
        for (_, _), p in entries.items():
            m |= p
        rows += [(mask, m, 0xFFFFFFFF), (other, mode & 7, 0xFFFFFFFF)]
        rows.sort(key=lambda r: (r[0], r[2]))
        return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in rows)

    def named_of(fd: int) -> dict[tuple[int, int], int]:
        try:
            raw = os.getxattr(fd, xattr)
        except OSError:
            return {}
        rows = [struct.unpack_from("<HHI", raw, off) for off in range(4, len(raw), 8)]
        return {(t, i): p for t, p, i in rows if t in (user, group)}

    def set_meta(fd: int, uid_gid: tuple[int, int], mode: int, acl: dict[tuple[int, int], int]) -> None:
        os.fchown(fd, *uid_gid)
        os.fchmod(fd, mode)
        if acl:
            os.setxattr(fd, xattr, acl_value(mode, acl))
        else:
            with contextlib.suppress(OSError):  # none there (or no ACL support: nothing to remove)
                os.removexattr(fd, xattr)

    def open_dir(path: str, create: bool) -> int:
        """The directory itself, never what a symlink in its place points at (parents may be links, as
        /var/run -> /run: they belong to root)."""
        if create:
            os.makedirs(path, mode=0o755, exist_ok=True)
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)

    results = []
    for e in entries:
        path, is_dir = e["path"].rstrip("/") or "/", e["kind"] == "dir"
        parent, name = os.path.split(path)
        changes: list[str] = []
        old = None
        if e["kind"] == "link":
            current = os.readlink(path) if os.path.islink(path) else None
            if current != e["target"]:
                changes.append("created" if current is None else "target")
                if not check:
                    dfd = open_dir(parent, create=True)
                    try:
                        tmp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
                        os.symlink(e["target"], tmp, dir_fd=dfd)
                        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
                    finally:
                        os.close(dfd)
            if changes:
                results.append({"path": path, "changes": changes, "old": None})
            continue
        want_ids, acl = ids(e["owner"], e["group"]), named(e["acl"])
        significant = significant_mode_bits(bool(e["acl"]))
        if is_dir:
            try:
                fd = open_dir(path, create=False)
            except FileNotFoundError:
                fd = -1
                changes.append("created")
            try:
                if fd >= 0:
                    st = os.fstat(fd)
                    if want_ids is None or (st.st_uid, st.st_gid) != want_ids:
                        changes.append("owner")
                    if (st.st_mode & significant) != (e["mode"] & significant):
                        changes.append("mode")
                    if acl is None or named_of(fd) != acl:
                        changes.append("acl")
                if changes and not check:
                    if want_ids is None or acl is None:
                        raise SystemExit(f"user or group missing here: {e['owner']}:{e['group']} {e['acl']} "
                                         f"for {path}")
                    if fd < 0:
                        fd = open_dir(path, create=True)
                    set_meta(fd, want_ids, e["mode"], acl)
            finally:
                if fd >= 0:
                    os.close(fd)
        else:
            content = base64.b64decode(e["content"])
            try:
                dfd = open_dir(parent, create=not check)
            except FileNotFoundError:
                dfd = -1
            try:
                try:
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd) \
                        if dfd >= 0 else -1
                except (FileNotFoundError, OSError):
                    fd = -1  # missing, or a symlink in its place: both are replaced
                if fd < 0:
                    changes.append("created")
                else:
                    with os.fdopen(fd, "rb") as current_file:
                        st = os.fstat(current_file.fileno())
                        current = current_file.read() if stat.S_ISREG(st.st_mode) else None
                        if current != content:
                            changes.append("content")
                            if check and current is not None and len(current) <= MAX_OLD:
                                old = base64.b64encode(current).decode()
                        if want_ids is None or (st.st_uid, st.st_gid) != want_ids:
                            changes.append("owner")
                        if (st.st_mode & significant) != (e["mode"] & significant):
                            changes.append("mode")
                        if acl is None or named_of(current_file.fileno()) != acl:
                            changes.append("acl")
                if changes and not check:
                    if want_ids is None or acl is None:
                        raise SystemExit(f"user or group missing here: {e['owner']}:{e['group']} {e['acl']} "
                                         f"for {path}")
                    tmp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                                 dir_fd=dfd)
                    try:
                        with os.fdopen(fd, "wb") as f:
                            f.write(content)
                            f.flush()
                            set_meta(f.fileno(), want_ids, e["mode"], acl)
                        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
                    except BaseException:
                        with contextlib.suppress(OSError):
                            os.unlink(tmp, dir_fd=dfd)
                        raise
            finally:
                if dfd >= 0:
                    os.close(dfd)
        if changes:
            results.append({"path": path, "changes": changes, "old": old})
    return results


def items(entries: Iterable[Any]) -> list[dict[str, Any]]:
    """:func:`sync`'s input from plan entries (a FileEntry has content, a LinkEntry a target)."""
    out = []
    for e in entries:
        if hasattr(e, "target"):  # a LinkEntry
            out.append({"path": e.path, "kind": "link", "target": e.target})
            continue
        item: dict[str, Any] = {"path": e.path, "owner": e.owner, "group": e.group, "mode": e.mode,
                                "acl": list(e.acl), "kind": "file" if hasattr(e, "content") else "dir"}
        if hasattr(e, "content"):
            item["content"] = base64.b64encode(e.content).decode()
        out.append(item)
    return out


def main() -> None:  # pragma: no cover - runs on the server
    import json

    req = json.load(sys.stdin)
    json.dump(sync(req["entries"], bool(req["check"])), sys.stdout)


def source() -> str:
    """The program's text, as sent to ``python3 -c``."""
    head = "from __future__ import annotations\nimport sys\nfrom typing import Any\n"
    return (head + f"MAX_OLD = {MAX_OLD}\n" + inspect.getsource(significant_mode_bits) + inspect.getsource(sync)
            + inspect.getsource(main) + "\nmain()\n")
