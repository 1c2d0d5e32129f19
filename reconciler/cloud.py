"""Which Azure cloud the reconciler talks to: endpoints and token scopes per API.

`WIF_CLOUD` names a national cloud, or `custom` for endpoints given one by one
(`WIF_GRAPH_URL`, `WIF_ARM_URL`, `WIF_ADO_URL`): that is how the local simulator's
env file points the reconciler at itself. Custom endpoints keep the public cloud's
token audiences, as the simulator checks them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

ADO_RESOURCE = "499b84ac-1321-427f-aa17-267ca6975798"  # Azure DevOps' own application id


class CloudError(ValueError):
    """The cloud settings are missing or malformed."""


@dataclass(frozen=True)
class Cloud:
    name: str
    graph_url: str  # without the /v1.0 suffix
    arm_url: str
    ado_url: str  # stands for https://dev.azure.com; organization paths go below it
    graph_scope: str
    arm_scope: str
    ado_scope: str = f"{ADO_RESOURCE}/.default"
    # Where azure-identity signs in; None leaves it to azure-identity (AZURE_AUTHORITY_HOST, else public).
    authority_host: str | None = None
    # A private CA to trust (the simulator's); None trusts the system's store, as in Azure.
    ca_bundle: str | None = None


PUBLIC = Cloud(
    "AzureCloud",
    "https://graph.microsoft.com",
    "https://management.azure.com",
    "https://dev.azure.com",
    "https://graph.microsoft.com/.default",
    "https://management.azure.com/.default",
)
CLOUDS: dict[str, Cloud] = {
    "AzureCloud": PUBLIC,
    "AzureUSGovernment": Cloud(
        "AzureUSGovernment",
        "https://graph.microsoft.us",
        "https://management.usgovcloudapi.net",
        "https://dev.azure.com",
        "https://graph.microsoft.us/.default",
        "https://management.usgovcloudapi.net/.default",
        authority_host="login.microsoftonline.us",
    ),
    "AzureChinaCloud": Cloud(
        "AzureChinaCloud",
        "https://microsoftgraph.chinacloudapi.cn",
        "https://management.chinacloudapi.cn",
        "https://dev.azure.com",
        "https://microsoftgraph.chinacloudapi.cn/.default",
        "https://management.chinacloudapi.cn/.default",
        authority_host="login.chinacloudapi.cn",
    ),
}
CUSTOM_SETTINGS = ("WIF_GRAPH_URL", "WIF_ARM_URL", "WIF_ADO_URL")


def cloud_from_settings(settings: Mapping[str, str], name: str | None = None) -> Cloud:
    """The cloud named by `name`, else by WIF_CLOUD (default AzureCloud).

    `custom` (alias `simulator`) reads every endpoint from WIF_GRAPH_URL, WIF_ARM_URL and
    WIF_ADO_URL, which must be https URLs.
    """
    chosen = name or settings.get("WIF_CLOUD") or "AzureCloud"
    if chosen in CLOUDS:
        return CLOUDS[chosen]
    if chosen not in {"custom", "simulator"}:
        raise CloudError(
            f"unknown cloud {chosen!r}: expected one of {', '.join([*CLOUDS, 'simulator', 'custom'])}"
        )
    missing = [key for key in CUSTOM_SETTINGS if not settings.get(key)]
    if missing:
        raise CloudError(
            f"cloud {chosen!r} needs {', '.join(missing)}; "
            "start the simulator with --env-file and source that file"
        )
    urls = [settings[key].strip().rstrip("/") for key in CUSTOM_SETTINGS]
    for key, url in zip(CUSTOM_SETTINGS, urls, strict=True):
        if not url.startswith("https://"):
            raise CloudError(
                f"{key} must be an https URL (bearer tokens are never sent over http), got {url!r:.200}"
            )
        if not _is_base_url(url):
            raise CloudError(  # not echoed: it may hold credentials
                f"{key} must be an https URL of a host, with an optional port and path, and no "
                "credentials, query, fragment or spaces (API paths are appended to it)"
            )
    ca_bundle = settings.get("REQUESTS_CA_BUNDLE") or settings.get("SSL_CERT_FILE") or None
    return replace(
        PUBLIC, name="custom", graph_url=urls[0], arm_url=urls[1], ado_url=urls[2], ca_bundle=ca_bundle
    )


def _is_base_url(url: str) -> bool:
    """A URL that paths can be appended to: a host, no credentials, query, fragment or spaces."""
    if any(c.isspace() or not c.isprintable() or c in "?#" for c in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:  # a broken IPv6 literal, a bad port
        return False
    return bool(parts.hostname) and parts.username is None and parts.password is None
