"""Where every command finds the grant policy: --policy, else $WIF_POLICY_FILE, else policy.yaml.

Every command that reads configs checks them against the policy (plan, apply, validate, import,
submit), so a config that asks for more than the policy allows is refused before anything else.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_POLICY = "policy.yaml"
POLICY_HELP = f"grant policy (default: $WIF_POLICY_FILE or {DEFAULT_POLICY})"


def policy_path(given: Path | None) -> Path:
    return given or Path(os.environ.get("WIF_POLICY_FILE") or DEFAULT_POLICY)
