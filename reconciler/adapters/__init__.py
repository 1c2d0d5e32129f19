"""One adapter per remote API: Microsoft Graph (`graph`), Azure RBAC (`arm`), Azure DevOps (`ado`).

Each turns the SDK's or the REST API's answers into core values and classifies failures as
temporary or permanent (`reconciler.failures`). Adapters never import each other; `metering`,
`pacing` (each API's budget, kept client-side) and `transport` are the plumbing they share.
They may import `core`, `cloud` and `failures`.
"""
