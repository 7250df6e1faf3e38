"""`pgha doctor`: the seed's common-problems table (section 19), diagnosed automatically.

    collect.py   Evidence: the snapshot plus per-node facts, through the probes and the Transport
    dcs.py       etcd quorum, no leader, initial-cluster-state left at 'new'
    postgres.py  Patroni without etcd, start failed, replica not streaming, pg_rewind, PostgreSQL
                 outside Patroni, superuser password out of sync
    protection.py  what silently removes protection: failover paused, no failover candidate, sync without
                 a standby, two primaries, pending restart, slots retaining WAL, the watchdog off
    proxy.py     services down, the VIP (not answering, held twice), HAProxy routing
    tls.py       certificate expiry, SANs, chain/CA, key owners and modes, readable by postgres
    network.py   clock skew, ports between the nodes

Each diagnosis is a pure function Evidence -> [Finding(problem, evidence, fix, severity)]; each Finding's
code is a problem of pgha.problems, the list the alert rules are rendered from.
"""

from pgha.doctor.model import DoctorReport, Evidence, Finding, Severity
from pgha.doctor.runner import DIAGNOSES, diagnose, run_diagnoses

__all__ = ["DIAGNOSES", "Evidence", "Finding", "DoctorReport", "Severity", "diagnose", "run_diagnoses"]
