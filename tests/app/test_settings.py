"""Every app setting the code reads is documented in local.settings.sample.json (and so, through
tests/infra, set on the Function App in Azure), except the custom-cloud ones the simulator writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from reconciler.cloud import CUSTOM_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
# Read only against the simulator or a custom cloud; the simulator's env file sets them.
CUSTOM_CLOUD = {*CUSTOM_SETTINGS, "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"}
# Replacements of local-only settings in Azure (infra/local-only-settings.json lists them).
REPLACEMENTS = {
    name
    for names in json.loads((ROOT / "infra" / "local-only-settings.json").read_text())["localOnly"].values()
    for name in names
}
READ = re.compile(
    r"""(?:settings|environ)\.get\(\s*["']([A-Za-z_][A-Za-z0-9_]*)["']|_SETTING\s*=\s*["']([A-Za-z_][A-Za-z0-9_]*)["']|["']%([A-Z][A-Z_]+)%["']"""
)


def settings_read_by_the_code() -> set[str]:
    sources = [ROOT / "function_app.py", *(ROOT / "reconciler").rglob("*.py")]
    found: set[str] = set()
    for source in sources:
        for match in READ.finditer(source.read_text(encoding="utf-8")):
            found.add(next(group for group in match.groups() if group))
    return found


def test_every_setting_the_app_reads_is_documented() -> None:
    documented = set(json.loads((ROOT / "local.settings.sample.json").read_text())["Values"])
    read = settings_read_by_the_code()
    assert {"WIF_POLICY_FILE", "WIF_TABLE_ENDPOINT", "ServiceBusConnection", "DRIFT_SCHEDULE"} <= read
    assert read - documented - CUSTOM_CLOUD - REPLACEMENTS == set()


def test_the_sample_holds_no_secret() -> None:
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    for name, value in values.items():
        assert "AccountKey=" not in value, name
        assert not re.search(r"SharedAccessKey=(?!local;)", value), name
