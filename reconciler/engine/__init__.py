"""One reconcile pass: observe live state with bulk reads, plan (pure), apply in dependency order.

`run` wires the adapters into a `Reconciler`; `observe` and `apply` drive the adapters. The engine
may import `adapters`, `core`, `cloud` and `failures`, never the state or the shells.
"""
