"""The value types of a node's filesystem: what a plan asks for and what a Transport writes.

A leaf module (standard library only), so the Transport interface, the plan builder and the
server-side file helper share one definition of a file, a directory, a link and the ACL-bits rule.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DirEntry:
    """A directory with its owner, mode and named-user/group ACL entries (``u:postgres:rx``)."""

    path: str
    owner: str = "root"
    group: str = "root"
    mode: int = 0o755
    acl: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileEntry:
    """A regular file: content, owner, mode and ACL entries."""

    path: str
    content: bytes
    owner: str = "root"
    group: str = "root"
    mode: int = 0o644
    acl: tuple[str, ...] = ()


@dataclass(frozen=True)
class LinkEntry:
    """A symbolic link (owned by root) to ``target``."""

    path: str
    target: str


def significant_mode_bits(has_acl: bool) -> int:
    """The mode bits to compare: with an ACL the group bits show the ACL mask, so only owner, other and
    the special bits count then. Self-contained: its source is also sent to the servers."""
    return 0o7707 if has_acl else 0o7777
