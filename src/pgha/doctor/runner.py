"""Run every diagnosis over one Evidence; a diagnosis that crashes becomes a note, never a traceback."""

from __future__ import annotations

import time

from pgha.doctor import backup, dcs, network, postgres, protection, proxy, tls
from pgha.doctor.collect import collect
from pgha.doctor.model import Diagnosis, DoctorReport, Evidence, Finding
from pgha.probe import Credentials
from pgha.target import Target

DIAGNOSES: tuple[Diagnosis, ...] = (*dcs.DIAGNOSES, *postgres.DIAGNOSES, *protection.DIAGNOSES, *backup.DIAGNOSES,
                                    *proxy.DIAGNOSES, *tls.DIAGNOSES, *network.DIAGNOSES)
"""In the order a person should read the findings: the cluster's brain first, then data and what protects
it, clients, files."""


def run_diagnoses(ev: Evidence, diagnoses: tuple[Diagnosis, ...] = DIAGNOSES) -> tuple[list[Finding], list[str]]:
    findings: list[Finding] = []
    notes: list[str] = list(ev.notes)
    for diagnosis in diagnoses:
        try:
            findings += diagnosis(ev)
        except Exception as exc:  # one broken diagnosis must not hide the others' findings
            notes.append(f"diagnosis {diagnosis.__name__} could not run: {type(exc).__name__}: {exc}")
    return findings, notes


def diagnose(target: Target, creds: Credentials) -> DoctorReport:
    """Collect the evidence once, then run every diagnosis over it."""
    t0 = time.monotonic()
    findings, notes = run_diagnoses(collect(target, creds))
    return DoctorReport(tuple(findings), time.monotonic() - t0, tuple(notes))
