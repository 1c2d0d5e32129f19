"""App settings as `func start` gives them: local.settings.json's `Values`, under the environment.

Core Tools exports each of `Values` as an environment variable unless the environment already has
it (then the environment wins, with a notice). Binding attributes written `%NAME%` are resolved from
these settings when the functions are indexed, as the host does for `schedule="%DRIFT_SCHEDULE%"`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path

SETTING_REFERENCE = re.compile(r"%([^%]+)%")


class SettingsError(ValueError):
    pass


def read_local_settings(path: Path) -> dict[str, str]:
    """The `Values` of a local.settings.json file; an absent file means no values."""
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise SettingsError(f"{path}: not a readable JSON file ({error})") from None
    values = document.get("Values", {}) if isinstance(document, dict) else None
    if not isinstance(values, dict):
        raise SettingsError(f"{path}: `Values` must be an object of setting names to strings")
    wrong = [name for name, value in values.items() if not isinstance(value, str)]
    if wrong:
        raise SettingsError(f"{path}: Values.{wrong[0]} must be a string (app settings are text)")
    return dict(values)


def export_settings(values: Mapping[str, str], environment: MutableMapping[str, str]) -> list[str]:
    """Puts the values into the environment, never over what it holds; returns the names skipped."""
    skipped = []
    for name, value in values.items():
        if name in environment:
            skipped.append(name)
        else:
            environment[name] = value
    return skipped


def resolve(value: str, settings: Mapping[str, str] = os.environ) -> str:
    """`value` with every `%NAME%` replaced by the setting NAME (missing or empty: an error)."""

    def setting(match: re.Match[str]) -> str:
        found = settings.get(match.group(1))
        if not found:
            raise SettingsError(
                f"{match.group(0)} does not resolve to a value: set the app setting {match.group(1)}"
            )
        return found

    return SETTING_REFERENCE.sub(setting, value)
