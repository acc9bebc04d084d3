"""Shared test infrastructure: running real server processes (DaoHub, CNCF distribution)."""

from .server import DaoHubProcess, DistributionProcess, ServerStartError, free_port

__all__ = ["DaoHubProcess", "DistributionProcess", "ServerStartError", "free_port"]
