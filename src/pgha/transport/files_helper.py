"""A small program run by the server's own python3 (``python3 -c``): it brings many files,
directories and links to their owner, mode, ACL and content in one SSH round trip, or only reports
what it would change (``check``). Its input is JSON on stdin; its output one JSON list on stdout.

:func:`main` uses nothing but the standard library and :func:`pgha.files.significant_mode_bits`,
whose source is sent with it: the program runs on the server, where pgha is not.
"""

from __future__ import annotations

import inspect
import sys

from pgha.files import significant_mode_bits

MAX_OLD = 256 * 1024
"""Old contents larger than this are not sent back for diffs."""


def main() -> None:  # pragma: no cover - runs on the server
    import base64
    import grp
    import json
    import os
    import pwd
    import shutil
    import subprocess
    import tempfile

    req = json.load(sys.stdin)
    check = bool(req["check"])
    have_acl = shutil.which("getfacl") is not None

    def ids(owner: str, group: str) -> tuple[int, int] | None:
        try:
            return pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid
        except KeyError:
            return None

    def perms(p: str) -> str:
        return ("r" if "r" in p else "-") + ("w" if "w" in p else "-") + ("x" if "x" in p or "X" in p else "-")

    def want_acl(entries: list[str]) -> set[str]:
        out = set()
        for e in entries:
            kind, name, p = e.split(":")
            out.add(f"{'user' if kind in ('u', 'user') else 'group'}:{name}:{perms(p)}")
        return out

    def have_acl_of(path: str) -> set[str]:
        if not have_acl:
            return set()
        res = subprocess.run(["getfacl", "-c", "-p", path], capture_output=True, text=True)
        named = set()
        for line in res.stdout.splitlines():
            parts = line.split("#")[0].strip().split(":")
            if len(parts) == 3 and parts[0] in ("user", "group") and parts[1]:
                named.add(":".join(parts))
        return named

    results = []
    for e in req["entries"]:
        path, is_dir = e["path"], e["kind"] == "dir"
        if e["kind"] == "link":
            current = os.readlink(path) if os.path.islink(path) else None
            if current != e["target"]:
                results.append({"path": path, "changes": ["created" if current is None else "target"],
                                "old": None})
                if not check:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    tmp = f"{path}.pgha-new"
                    if os.path.lexists(tmp):
                        os.unlink(tmp)
                    os.symlink(e["target"], tmp)
                    os.replace(tmp, path)
            continue
        content = base64.b64decode(e["content"]) if not is_dir else None
        changes: list[str] = []
        old = None
        exists = os.path.isdir(path) if is_dir else os.path.isfile(path)
        if not exists:
            changes.append("created")
        elif content is not None:
            with open(path, "rb") as src:
                current = src.read()
            if current != content:
                changes.append("content")
                if check and len(current) <= MAX_OLD:
                    old = base64.b64encode(current).decode()
        want_ids = ids(e["owner"], e["group"])
        acl = want_acl(e["acl"])
        if exists:
            st = os.lstat(path)
            if want_ids is None or (st.st_uid, st.st_gid) != want_ids:
                changes.append("owner")
            significant = significant_mode_bits(bool(acl))
            if (st.st_mode & significant) != (e["mode"] & significant):
                changes.append("mode")
            if have_acl_of(path) != acl:
                changes.append("acl")
        if changes and not check:
            if want_ids is None:
                raise SystemExit(f"user or group missing on the server: {e['owner']}:{e['group']} for {path}")
            if is_dir:
                os.makedirs(path, exist_ok=True)
            elif "created" in changes or "content" in changes:
                parent = os.path.dirname(path)
                os.makedirs(parent, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=parent, prefix="." + os.path.basename(path) + ".")
                with os.fdopen(fd, "wb") as f:
                    f.write(content or b"")
                os.chown(tmp, *want_ids)
                os.chmod(tmp, e["mode"])
                os.replace(tmp, path)
            os.chown(path, *want_ids)
            if have_acl and (acl or "acl" in changes):
                subprocess.run(["setfacl", "-b", path], check=True, capture_output=True)
            os.chmod(path, e["mode"])
            if acl:  # after chmod, which would reset the mask
                if not have_acl:
                    raise SystemExit(f"setfacl is missing on the server (package acl), needed for {path}")
                subprocess.run(["setfacl", "-m", ",".join(sorted(e["acl"])), path], check=True,
                               capture_output=True)
        if changes:
            results.append({"path": path, "changes": changes, "old": old})
    json.dump(results, sys.stdout)


def source() -> str:
    """The program's text, as sent to ``python3 -c``."""
    head = "from __future__ import annotations\n"
    return (head + inspect.getsource(significant_mode_bits) + inspect.getsource(main)
            + f"\nMAX_OLD = {MAX_OLD}\nimport sys\nmain()\n")
