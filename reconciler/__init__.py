"""The WIF Reconciler: keeps Azure Pipelines' workload identity federation converged.

The packages are layers, and imports point one way (import-linter checks it, see pyproject.toml):

    app | cli      the two shells: the Functions app's service and HTTP API; the command line
      state        where requests and desired state live: Azure Tables, Service Bus, tickets
      engine       one reconcile pass: observe (bulk reads) -> plan -> apply
      adapters     one adapter per remote API: Microsoft Graph, ARM, Azure DevOps
      core         pure: model, validation, policy, plan, sharding; no I/O, no SDK

`app` and `cli` never import each other. The modules at this level are shared by both shells and
sit outside the layers: `cloud` (endpoints per Azure cloud), `failures` (temporary or permanent,
and what an HTTP status and its Retry-After mean for every adapter),
`documents` (reading YAML/JSON files) and `render` (plans and reports as tables or JSON).
"""
