"""The one writer of node files (pgha.transport.files_helper), as root against a service user who races it.

The issue's finding: root wrote into a directory the service user owns and then changed owner and mode by
path; swapping the file for a symlink in that window handed a root-owned file to postgres. Here postgres
swaps the target for a symlink to a root-owned sentinel as fast as it can while root writes the file again
and again (content, mode and ACL changing): the sentinel must keep its owner, mode, ACL and content.
"""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgha.transport import files_helper

SWAPPER = """
import os, sys
d, target = sys.argv[1], sys.argv[2]
i = 0
while not os.path.exists(os.path.join(d, "stop")):
    i += 1
    tmp = os.path.join(d, f"link{i % 2}")
    try:
        os.symlink(target, tmp)
        os.rename(tmp, os.path.join(d, "app.cfg"))  # atomic: the name is a symlink from now on
    except OSError:
        pass
"""


@pytest.fixture
def arena() -> Iterator[tuple[Path, Path]]:
    if os.geteuid() != 0:
        pytest.skip("needs root (the writer runs as root, the racer as postgres)")
    try:
        pg = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("needs the postgres user")
    base = Path(tempfile.mkdtemp(prefix="pgha-writer-", dir="/tmp"))
    base.chmod(0o755)
    conf = base / "conf"  # owned by the service user, as /etc/patroni used to be
    conf.mkdir()
    os.chown(conf, pg.pw_uid, pg.pw_gid)
    sentinel = base / "sentinel"
    sentinel.write_text("root's\n")
    sentinel.chmod(0o644)
    try:
        yield conf, sentinel
    finally:
        shutil.rmtree(base)


def entry(path: Path, content: bytes, mode: int, acl: list[str]) -> dict[str, object]:
    return {"kind": "file", "path": str(path), "owner": "postgres", "group": "postgres", "mode": mode,
            "acl": acl, "content": base64.b64encode(content).decode()}


def test_a_racing_symlink_swap_never_changes_a_file_outside(arena: tuple[Path, Path]) -> None:
    conf, sentinel = arena
    racer = subprocess.Popen(["runuser", "-u", "postgres", "--", "/usr/bin/python3", "-c", SWAPPER, str(conf),
                              str(sentinel)])
    try:
        for i in range(400):
            files_helper.sync([entry(conf / "app.cfg", f"v{i % 3}\n".encode(), (0o600, 0o640)[i % 2],
                                     [[], ["u:nobody:r"]][i % 2])], check=False)
    finally:
        (conf / "stop").touch()
        racer.wait(timeout=30)
    st = sentinel.lstat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o644)
    assert sentinel.read_text() == "root's\n"
    with pytest.raises(OSError):
        os.getxattr(sentinel, "system.posix_acl_access")
    assert racer.returncode == 0


def test_acl_and_modes_as_setfacl_leaves_them(arena: tuple[Path, Path]) -> None:
    """The ACL written on the descriptor is what `chmod` + `setfacl -m` write: getfacl reads it back."""
    conf, _ = arena
    key = conf / "etcd.key"
    files_helper.sync([entry(key, b"KEY\n", 0o600, ["u:nobody:r"]),
                       {"kind": "dir", "path": str(conf), "owner": "root", "group": "postgres", "mode": 0o750,
                        "acl": ["u:nobody:rx"]}], check=False)
    acl = subprocess.run(["getfacl", "-cp", str(key)], capture_output=True, text=True, check=True).stdout.split()
    assert acl == ["user::rw-", "user:nobody:r--", "group::---", "mask::r--", "other::---"]
    assert key.stat().st_mode & 0o777 == 0o640  # the group bits show the mask
    dacl = subprocess.run(["getfacl", "-cp", str(conf)], capture_output=True, text=True, check=True).stdout.split()
    assert dacl == ["user::rwx", "user:nobody:r-x", "group::r-x", "mask::r-x", "other::---"]
    assert conf.stat().st_uid == 0
    assert subprocess.run(["runuser", "-u", "nobody", "--", "cat", str(key)], capture_output=True).stdout == b"KEY\n"
    # Once there, nothing to do; a loosened mode or a dropped ACL is found and fixed.
    same = [entry(key, b"KEY\n", 0o600, ["u:nobody:r"])]
    assert files_helper.sync(same, check=False) == []
    subprocess.run(["setfacl", "-b", str(key)], check=True)
    assert files_helper.sync(same, check=True)[0]["changes"] == ["acl"]
    files_helper.sync(same, check=False)
    assert files_helper.sync(same, check=True) == []
