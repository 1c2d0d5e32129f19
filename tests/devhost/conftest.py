from cloudsim.testing import cloud_env, cloud_simulator
from servicebus_peer.testing import servicebus_peer
from tests.azurite import azurite_tables, table_settings

__all__ = ["azurite_tables", "cloud_env", "cloud_simulator", "servicebus_peer", "table_settings"]
