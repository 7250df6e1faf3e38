"""How pgha reaches a node: a network namespace in the lab, SSH on real servers."""
