"""A local stand-in for Microsoft Graph, ARM Microsoft.Authorization, Azure DevOps and the
managed-identity token endpoint, served over HTTPS on loopback for tests, demos and benchmarks.

It never ships: production code must not import it.
"""

from cloudsim.faults import Faults
from cloudsim.server import Simulator
from cloudsim.state import World

__all__ = ["Faults", "Simulator", "World"]
