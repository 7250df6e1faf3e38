"""pgha: the PostgreSQL HA stack of etcd, Patroni, HAProxy and keepalived, as software.

The flow: ``cluster.yml`` → :class:`pgha.spec.ClusterSpec` → PKI and secrets → a per-node
:class:`pgha.plan.NodePlan` → an orchestrator driving a :class:`pgha.transport.base.Transport`.
"""

__version__ = "0.1.0"
DEFAULT_SPEC_FILE = "cluster.yml"
