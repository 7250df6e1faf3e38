"""`pgha deploy` to real servers (SSH + systemd) and `pgha bundle build` (offline packages)."""

from pgha.deploy.run import Change, DeployResult, deploy

__all__ = ["Change", "DeployResult", "deploy"]
