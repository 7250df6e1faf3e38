"""pgha: the PostgreSQL HA stack of etcd, Patroni, HAProxy and keepalived, as software.

The flow: ``cluster.yml`` → :class:`pgha.spec.ClusterSpec` → PKI and secrets → a
:class:`pgha.target.Target`'s per-node :class:`pgha.plan.NodePlan` → an orchestrator driving its
:class:`pgha.transport.base.Transport`; the running cluster is read back as one
:class:`pgha.probe.snapshot.ClusterSnapshot`. The map: docs/architecture.md.
"""

__version__ = "0.1.0"
DEFAULT_SPEC_FILE = "cluster.yml"
