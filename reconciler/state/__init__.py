"""Where requests and the desired state live, and how work is handed on.

Azure Tables: `configs` (desired configs, ETag-guarded, with tombstones), `status` (the latest
reconcile per config), `requests` (ticket requests and their outcomes), opened together by
`stores`, on the shared plumbing of `tables`. Service Bus: `queues` (reconcile fan-out,
follow-ups, submission, dead letters). `tickets` parses and checks ticket requests. `probes`
checks, read-only, that the tables and queues exist and may be used (for `doctor`). This layer
may import `engine`, `adapters`, `core` and the shared root modules, never `app` or `cli`.
"""
