"""Tokens: the audiences azure-identity sends are normalised; expired or foreign tokens are refused."""

from __future__ import annotations

import time

import pytest

from cloudsim import tokens
from cloudsim.state import ADO_RESOURCE_APP_ID


@pytest.mark.parametrize(
    ("resource", "audiences"),
    [
        ("https://graph.microsoft.com/.default", tokens.GRAPH_AUDIENCES),
        ("https://graph.microsoft.com/", tokens.GRAPH_AUDIENCES),
        ("https://management.azure.com/.default", tokens.ARM_AUDIENCES),
        ("https://management.core.windows.net/", tokens.ARM_AUDIENCES),
        (f"{ADO_RESOURCE_APP_ID}/.default", tokens.ADO_AUDIENCES),
        (ADO_RESOURCE_APP_ID.upper(), tokens.ADO_AUDIENCES),
    ],
)
def test_each_api_accepts_its_audience_however_it_is_spelled(
    resource: str, audiences: frozenset[str]
) -> None:
    token, _expires = tokens.mint(resource, "tenant", "caller")
    assert tokens.check_bearer(f"Bearer {token}", audiences) is None


def test_foreign_expired_missing_and_garbage_tokens_are_refused() -> None:
    graph_token, _ = tokens.mint("https://graph.microsoft.com", "tenant", "caller")
    problem = tokens.check_bearer(f"Bearer {graph_token}", tokens.ARM_AUDIENCES)
    assert problem is not None and problem.code == "InvalidAuthenticationToken"
    expired, _ = tokens.mint("https://management.azure.com", "tenant", "caller", now=time.time() - 7200)
    problem = tokens.check_bearer(f"Bearer {expired}", tokens.ARM_AUDIENCES)
    assert problem is not None and "expired" in problem.message
    missing = tokens.check_bearer(None, tokens.ARM_AUDIENCES)
    assert missing is not None and missing.code == "AuthenticationFailed"
    garbage = tokens.check_bearer("Bearer not-a-jwt", tokens.ARM_AUDIENCES)
    assert garbage is not None and garbage.code == "InvalidAuthenticationToken"
