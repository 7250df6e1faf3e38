"""How pgha reaches a node: the Transport interface (:mod:`~pgha.transport.base`) and its SSH + systemd
implementation for real servers (:mod:`~pgha.transport.ssh`); the lab's namespace transport lives with
the lab (:mod:`pgha.lab.transport`)."""
