"""The engine against the local cloud: the real SDKs, over HTTPS, with the simulator's managed identity."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from azure.identity.aio import ManagedIdentityCredential

from cloudsim.testing import SAMPLE_SUBSCRIPTION, RunningSimulator, cloud_env, cloud_simulator
from reconciler.adapters.ado import AdoAdapter
from reconciler.adapters.arm import ArmAdapter
from reconciler.adapters.metering import RequestMeter
from reconciler.cloud import Cloud, cloud_from_settings
from reconciler.core.model import FederationConfig
from reconciler.engine.run import EngineOptions, RunReport, connect
from tests.core.builders import config, policy

__all__ = ["cloud_env", "cloud_simulator"]

VAULT = (
    f"/subscriptions/{SAMPLE_SUBSCRIPTION}/resourceGroups/rg-pay/providers/microsoft.keyvault/vaults/kv-pay"
)
KEY_VAULT_READER = "21090545-7ca7-4776-b22c-e363652d74d2"
FAST = EngineOptions(concurrency=8, principal_replication_window=5.0, retry_total=3)


@dataclass
class Tenant:
    """The simulator, the cloud settings pointing at it, and helpers to build configs for it."""

    sim: RunningSimulator
    cloud: Cloud

    async def app(self, name: str, *, tenant: str = "contoso/payments") -> dict[str, Any]:
        """An app a person made and handed over: the reconciler owns it, its tag names `tenant`."""
        seeded: dict[str, Any] = await self.sim.admin.seed_application(name, tenant=tenant)
        return seeded

    def config(self, name: str, app_id: str | None, **changes: Any) -> FederationConfig:
        made = config(name, app_id=app_id, grants=((KEY_VAULT_READER, VAULT),), **changes)
        return replace(made, tenant_id=self.sim.tenant_id, subscription_id=SAMPLE_SUBSCRIPTION)

    async def run(
        self, configs: list[FederationConfig], *, options: EngineOptions = FAST, **kwargs: Any
    ) -> RunReport:
        async with connect(self.cloud, policy(), options=options) as reconciler:
            return await reconciler.run(configs, **kwargs)

    async def writes(self) -> int:
        """Writes the simulator has served, over every API."""
        counters = await self.sim.admin.counters()
        return sum(int(api["writes"]) for api in counters.values())


@pytest.fixture
def tenant(cloud_env: RunningSimulator) -> Tenant:
    return Tenant(cloud_env, cloud_from_settings(os.environ))


@pytest.fixture
async def adapters(tenant: Tenant) -> AsyncIterator[tuple[ArmAdapter, AdoAdapter]]:
    """The ARM and ADO adapters alone, with no SDK retries: an error reaches the adapter as sent."""
    meter = RequestMeter()
    async with ManagedIdentityCredential(connection_verify=tenant.cloud.ca_bundle) as credential:
        arm = ArmAdapter(credential, tenant.cloud, meter, retry_total=0)
        ado = AdoAdapter(credential, tenant.cloud, meter, retry_total=0)
        try:
            yield arm, ado
        finally:
            await arm.close()
            await ado.close()
