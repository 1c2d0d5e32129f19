from __future__ import annotations

import pytest

from reconciler.cloud import CLOUDS, PUBLIC, CloudError, cloud_from_settings

SIMULATOR = {
    "WIF_CLOUD": "custom",
    "WIF_GRAPH_URL": "https://127.0.0.1:8443/",
    "WIF_ARM_URL": "https://127.0.0.1:8444",
    "WIF_ADO_URL": "https://127.0.0.1:8445",
    "REQUESTS_CA_BUNDLE": "/tmp/ca.pem",
}


def test_public_cloud_is_the_default() -> None:
    assert cloud_from_settings({}) is PUBLIC
    assert PUBLIC.graph_scope == "https://graph.microsoft.com/.default"
    assert PUBLIC.ado_scope == "499b84ac-1321-427f-aa17-267ca6975798/.default"


def test_national_clouds_have_their_own_endpoints_and_authority() -> None:
    government = cloud_from_settings({"WIF_CLOUD": "AzureUSGovernment"})
    assert government.arm_url == "https://management.usgovcloudapi.net"
    assert government.authority_host == "login.microsoftonline.us"
    assert cloud_from_settings({}, "AzureChinaCloud") is CLOUDS["AzureChinaCloud"]


def test_custom_endpoints_come_from_the_simulator_variables() -> None:
    cloud = cloud_from_settings(SIMULATOR)
    assert (cloud.graph_url, cloud.arm_url, cloud.ado_url) == (
        "https://127.0.0.1:8443",
        "https://127.0.0.1:8444",
        "https://127.0.0.1:8445",
    )
    assert cloud.ca_bundle == "/tmp/ca.pem"
    assert cloud.graph_scope == PUBLIC.graph_scope  # the simulator checks the public audiences
    assert cloud_from_settings(SIMULATOR, "simulator") == cloud


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"WIF_CLOUD": "Mars"}, "unknown cloud 'Mars'"),
        ({"WIF_CLOUD": "custom"}, "needs WIF_GRAPH_URL, WIF_ARM_URL, WIF_ADO_URL"),
        ({**SIMULATOR, "WIF_ARM_URL": "http://127.0.0.1:1"}, "WIF_ARM_URL must be an https URL"),
    ],
)
def test_bad_cloud_settings_say_what_to_fix(settings: dict[str, str], message: str) -> None:
    with pytest.raises(CloudError, match=message):
        cloud_from_settings(settings)
