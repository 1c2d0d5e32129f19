"""The pure core: the model, validation, the grant policy, the planner, sharding, serialisation.

Plain values in, plain values out: no I/O, no clock, no Azure SDK, no logging (import-linter
forbids them). Everything above builds on it; it imports nothing of the reconciler but itself.
"""
