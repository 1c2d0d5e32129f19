"""Break the demo tenant the ways it breaks in real life, through the simulator's admin API.

Run with the simulator's env file sourced (scripts/demo.sh does): it deletes the kv-reader
credential, turns the staging connection back into a secret-based one, moves deploy-web to
ADO's legacy issuer, and removes the kv-secrets role assignment.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloudsim.testing import AdminClient

KV_READER_APP = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"


async def main() -> None:
    admin = AdminClient(os.environ["WIF_SIMULATOR_ADMIN_URL"], Path(os.environ["REQUESTS_CA_BUNDLE"]))
    state = await admin.dump_state()
    endpoints = {
        e["name"]: (org["name"], e["id"]) for org in state["organizations"] for e in org["endpoints"]
    }
    await admin.delete_fic(KV_READER_APP, "contoso--payments--kv-reader")
    print("drift: deleted the federated credential of contoso/payments/kv-reader")
    await admin.convert_connection_to_secret(*endpoints["kv-reader-staging"])
    print("drift: contoso/payments/kv-reader-staging is a secret-based connection again")
    await admin.mark_connection_legacy(*endpoints["deploy-web"])
    print("drift: fabrikam/storefront/deploy-web moved to ADO's legacy vstoken issuer")
    secrets_assignment = next(
        ra
        for ra in state["role_assignments"]
        if "contoso/payments/kv-secrets" in (ra.get("description") or "")
    )
    await admin.delete_role_assignment(
        f"{secrets_assignment['scope']}/providers/Microsoft.Authorization/roleAssignments/{secrets_assignment['name']}"
    )
    print("drift: removed the Key Vault Secrets User assignment of contoso/payments/kv-secrets")


if __name__ == "__main__":
    asyncio.run(main())
