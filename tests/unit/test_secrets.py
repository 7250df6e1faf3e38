"""pgha.secrets: generated once, kept forever, private on disk, never shown by repr."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from pgha.errors import PghaError
from pgha.layout import StateLayout
from pgha.secrets import RESTAPI_USERNAME, Secrets, ensure_secrets, load_secrets, write_atomic

PASSWORDS = ("superuser_password", "replication_password", "restapi_password", "app_password", "rewind_password")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def state(tmp_path: Path) -> StateLayout:
    return StateLayout(tmp_path / "state")


def test_generates_safe_values(state: StateLayout) -> None:
    s = ensure_secrets(state)
    for name in PASSWORDS:
        value = getattr(s, name)
        assert len(value) == 24 and value.isascii() and value.isalnum(), name
    assert len(s.vrrp_password) == 8 and s.vrrp_password.isascii() and s.vrrp_password.isalnum()
    assert s.restapi_username == RESTAPI_USERNAME == "patroni"
    assert len({getattr(s, name) for name in PASSWORDS}) == len(PASSWORDS)


def test_file_is_private_yaml(state: StateLayout) -> None:
    s = ensure_secrets(state)
    assert mode(state.secrets) == 0o600
    assert mode(state.root) == 0o700
    data = yaml.safe_load(state.secrets.read_text())
    assert data["superuser_password"] == s.superuser_password
    assert data["vrrp_password"] == s.vrrp_password
    assert not list(state.root.glob(".*tmp"))  # the atomic write left no temporary file


def test_kept_forever(state: StateLayout) -> None:
    first = ensure_secrets(state)
    before = state.secrets.read_bytes()
    assert ensure_secrets(state) == first
    assert state.secrets.read_bytes() == before
    assert load_secrets(state) == first


def test_missing_keys_are_added_existing_ones_kept(state: StateLayout) -> None:
    first = ensure_secrets(state)
    data = yaml.safe_load(state.secrets.read_text())
    del data["restapi_password"]
    state.secrets.write_text(yaml.safe_dump(data))
    second = ensure_secrets(state)
    assert second.superuser_password == first.superuser_password
    assert second.restapi_password != first.restapi_password
    assert load_secrets(state) == second


def test_loose_mode_is_tightened(state: StateLayout) -> None:
    ensure_secrets(state)
    state.secrets.chmod(0o644)
    ensure_secrets(state)
    assert mode(state.secrets) == 0o600


def test_existing_parent_mode_left_alone(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    ensure_secrets(StateLayout(tmp_path))
    assert mode(tmp_path) == 0o755


def test_repr_hides_passwords(state: StateLayout) -> None:
    s = ensure_secrets(state)
    for text in (repr(s), str(s), f"{s}"):
        for name in (*PASSWORDS, "vrrp_password"):
            assert getattr(s, name) not in text
    assert "patroni" in repr(s)


def test_frozen(state: StateLayout) -> None:
    s = ensure_secrets(state)
    with pytest.raises(AttributeError):
        s.superuser_password = "x"  # type: ignore[misc]


def test_load_missing_has_hint(state: StateLayout) -> None:
    with pytest.raises(PghaError) as err:
        load_secrets(state)
    assert err.value.hint is not None and "pgha certs" in err.value.hint


@pytest.mark.parametrize("key, value, problem", [
    ("vrrp_password", "abcdefghij", "longer than 8"),
    ("superuser_password", "with:colon", "letters and digits"),
    ("replication_password", 12345, "must be a string"),
])
def test_load_rejects_bad_values(state: StateLayout, key: str, value: object, problem: str) -> None:
    ensure_secrets(state)
    data = yaml.safe_load(state.secrets.read_text())
    data[key] = value
    state.secrets.write_text(yaml.safe_dump(data))
    with pytest.raises(PghaError, match=problem):
        load_secrets(state)


def test_load_rejects_garbage(state: StateLayout) -> None:
    ensure_secrets(state)
    state.secrets.write_text("- just\n- a list\n")
    with pytest.raises(PghaError, match="mapping"):
        load_secrets(state)


def test_write_atomic_sets_mode_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    write_atomic(target, b"new", 0o644)
    assert target.read_bytes() == b"new" and mode(target) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_secrets_dataclass_equality() -> None:
    a = Secrets("a" * 24, "b" * 24, "c" * 24, "d" * 8)
    assert a == Secrets("a" * 24, "b" * 24, "c" * 24, "d" * 8)
    assert a.restapi_username == "patroni"
