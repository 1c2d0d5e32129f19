from tests.azurite import azurite_tables, table_settings

__all__ = ["azurite_tables", "table_settings"]
