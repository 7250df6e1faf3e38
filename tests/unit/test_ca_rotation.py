"""The CA rotation's files, phase by phase (pgha.ca_rotation): what each phase trusts and signs with."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from pgha import ca_rotation, pki
from pgha.errors import UsageError
from pgha.layout import StateLayout
from pgha.spec import ClusterSpec, default_data, parse


@pytest.fixture
def spec() -> ClusterSpec:
    return parse(default_data(lab=True))


@pytest.fixture
def state(spec: ClusterSpec, tmp_path: Path) -> StateLayout:
    s = StateLayout(tmp_path / "state")
    pki.ensure_pki(spec, s)
    return s


def bundle(state: StateLayout) -> list[int]:
    return [c.serial_number for c in ca_rotation.certificates((state.pki / "ca.crt").read_bytes())]


def key_matches(state: StateLayout, name: str, serial: int) -> bool:
    key = serialization.load_pem_private_key((state.pki / name).read_bytes(), password=None)
    cert = next(c for c in ca_rotation.certificates((state.pki / "ca.crt").read_bytes()) if c.serial_number == serial)
    pub = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(*pub) == cert.public_key().public_bytes(*pub)


def leaves_signed_by(state: StateLayout, serial: int) -> bool:
    ca = next(c for c in ca_rotation.certificates((state.pki / "ca.crt").read_bytes()) if c.serial_number == serial)
    return all(pki.issued_by(pki.load_cert(p), ca) for p in state.pki.glob("*.crt")
               if not p.name.startswith("ca"))


def test_three_phases_trust_and_sign_with_the_right_ca(spec: ClusterSpec, state: StateLayout) -> None:
    old = bundle(state)[0]
    assert ca_rotation.phase(state) is None

    ca_rotation.begin(spec, state)  # trust both, the old CA still signs
    assert ca_rotation.phase(state) == "trust-both"
    old_, new = bundle(state)
    assert old_ == old and new != old and key_matches(state, "ca.key", old)
    pki.ensure_pki(spec, state, rotate=True)
    assert leaves_signed_by(state, old) and all(s.ok for s in pki.check_pki(spec, state))
    assert ca_rotation.old_ca(state).serial_number == old  # type: ignore[union-attr]

    ca_rotation.switch(state)  # the new CA signs, both trusted
    assert ca_rotation.phase(state) == "reissue" and bundle(state) == [new, old]
    assert key_matches(state, "ca.key", new) and key_matches(state, "ca.old.key", old)
    report = pki.ensure_pki(spec, state, rotate=True)
    assert report.action_for("ca.crt").action is pki.Action.KEPT
    assert leaves_signed_by(state, new) and all(s.ok for s in pki.check_pki(spec, state))
    ca_rotation.switch(state)  # repeated (a resumed run): nothing moves
    assert bundle(state) == [new, old] and key_matches(state, "ca.key", new)

    ca_rotation.drop_old(state)
    assert ca_rotation.phase(state) == "drop-old" and bundle(state) == [new]
    ca_rotation.finish(state)
    assert ca_rotation.phase(state) is None and ca_rotation.old_ca(state) is None
    assert sorted(p.name for p in state.pki.glob("ca*")) == ["ca.crt", "ca.key"]


def test_switch_interrupted_after_the_key_moved_resumes(spec: ClusterSpec, state: StateLayout) -> None:
    old = bundle(state)[0]
    ca_rotation.begin(spec, state)
    new = bundle(state)[1]
    (state.pki / "ca.old.crt").write_bytes(ca_rotation._pem(ca_rotation.certificates(
        (state.pki / "ca.crt").read_bytes())[0]))
    (state.pki / "ca.key").replace(state.pki / "ca.old.key")  # the run died here: no ca.key at all
    ca_rotation.switch(state)
    assert bundle(state) == [new, old] and key_matches(state, "ca.key", new)
    assert key_matches(state, "ca.old.key", old) and not (state.pki / "ca.next.crt").exists()


def test_begin_twice_keeps_the_new_ca(spec: ClusterSpec, state: StateLayout) -> None:
    ca_rotation.begin(spec, state)
    first = bundle(state)
    ca_rotation.begin(spec, state)  # a resumed phase one: the same new CA, not a third one
    assert bundle(state) == first


def test_a_leaf_rotation_is_refused_mid_ca_rotation(spec: ClusterSpec, state: StateLayout) -> None:
    ca_rotation.require_none(state)
    ca_rotation.begin(spec, state)
    with pytest.raises(UsageError, match="a CA rotation is under way \\(phase trust-both\\)") as exc:
        ca_rotation.require_none(state)
    assert "certs rotate --ca" in (exc.value.hint or "")
