"""checkov runs over all of infra/ in CI, and every suppression is inline and justified."""

from __future__ import annotations

import re

from tests.infra.bicep import INFRA, ROOT

SUPPRESSION = re.compile(r"checkov:skip=")
JUSTIFIED = re.compile(r"^\s*//checkov:skip=CKV2?_AZURE_\d+: \S.{30,}$")


def test_every_suppression_names_one_check_and_says_why() -> None:
    bad = [
        f"{file.relative_to(ROOT)}:{number}: {line.strip()}"
        for file in sorted(INFRA.rglob("*.bicep"))
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1)
        if SUPPRESSION.search(line) and not JUSTIFIED.match(line)
    ]
    assert not bad, "write `//checkov:skip=CKV_AZURE_N: <why>` on its own line:\n" + "\n".join(bad)


def test_ci_runs_checkov_over_infra_without_blanket_exceptions() -> None:
    script = (ROOT / "scripts" / "test.sh").read_text(encoding="utf-8")
    invocation = re.search(r"checkov (--framework bicep -d infra .*?)\)", script, flags=re.DOTALL)
    assert invocation, "scripts/test.sh must run `checkov --framework bicep -d infra ...`"
    arguments = invocation.group(1).split()
    for blanket in ("--soft-fail", "-s", "--soft-fail-on", "--skip-check", "--check", "-c", "--config-file"):
        assert blanket not in arguments, f"scripts/test.sh must not pass {blanket} to checkov"
    assert not list(ROOT.glob(".checkov.y*ml")), "no repository-wide checkov config: suppress inline"
    # The one skipped path is the Graph module, which checkov's parser cannot read.
    assert re.findall(r"--skip-path '([^']+)'", script) == ["infra/app/graph-app-role.bicep"]
