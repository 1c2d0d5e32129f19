"""The command line, `python -m reconciler`: validate, plan, apply, and operations commands.

`main` (argument parsing and the config/plan/apply commands), `table_commands` (import/export of
the desired-state table), `queue_commands` (submit, dead-letter list and replay), `doctor` (the
identity's rights, read-only) and `snapshot` (observed-state files for `plan --observed`). It may
import every lower layer; it never imports `app`.
"""
