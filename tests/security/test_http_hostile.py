"""Bad input to the HTTP API gets 400, 413 or 415 as application/problem+json: never a 500, never a
stack trace. Each request goes through the Functions trigger with a real azure.functions.HttpRequest."""

from __future__ import annotations

import json

import azure.functions as func
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import function_app
from reconciler.app.http_api import MAX_BODY
from tests.security.conftest import Host
from tests.security.hostile import BOM

GOOD = b'{"configIds": ["contoso/payments/kv-reader"], "dryRun": true}'


def post(body: bytes, content_type: str | None = "application/json") -> func.HttpRequest:
    headers = {} if content_type is None else {"Content-Type": content_type}
    return func.HttpRequest("POST", "/api/reconcile", body=body, headers=headers)


def assert_problem(response: func.HttpResponse, status: int, case: str = "") -> dict[str, object]:
    assert response.status_code == status, (case, response.get_body()[:300])
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = json.loads(response.get_body())
    assert problem["status"] == status and problem["title"] and problem["detail"]
    assert "Traceback" not in response.get_body().decode()
    return dict(problem)


BAD = {
    "nested arrays": (b'{"configIds": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", 400),
    "nested objects": (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, 400),
    "too large": (b'{"configIds": ["' + b"a" * MAX_BODY + b'"]}', 413),
    "not UTF-8": (b'{"configIds": ["\xff\xfe"]}', 400),
    "raw surrogate": (b'{"configIds": ["\xed\xa0\x80"]}', 400),
    "escaped lone surrogate": (b'{"configIds": ["\\ud800"]}', 400),
    "duplicate keys": (b'{"all": false, "all": true}', 400),
    "NaN": (b'{"all": NaN}', 400),
    "Infinity": (b'{"all": true, "dryRun": Infinity}', 400),
    "huge integer": (b'{"all": ' + b"9" * 5000 + b"}", 400),
    "float overflow": (b'{"all": 1e999}', 400),
    "not an object": (b"[]", 400),
    "a config id that is not one": (b'{"configIds": ["../../etc/passwd"]}', 400),
    "a config id with a newline": (b'{"configIds": ["contoso/payments/kv-reader\\n"]}', 400),
    "a config id of 10,000 characters": (b'{"configIds": ["' + b"a" * 10_000 + b'"]}', 400),
    "too many config ids": (json.dumps({"configIds": ["a/b/c"] * 101}).encode(), 400),
}


async def test_a_bad_body_is_a_problem_not_a_500(host: Host) -> None:
    for case, (body, status) in BAD.items():
        assert_problem(await function_app.http_reconcile(post(body)), status, case)


async def test_the_content_type_must_be_json_and_a_bom_is_harmless(host: Host) -> None:
    not_json = [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/xml",
    ]
    for content_type in not_json:
        assert_problem(await function_app.http_reconcile(post(GOOD, content_type)), 415, content_type)
    unknown = BOM + b'{"configIds": ["contoso/none/x"]}'
    for json_type in [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "application/merge-patch+json",
    ]:
        response = await function_app.http_reconcile(post(unknown, json_type))
        assert_problem(response, 404, str(json_type))  # parsed and looked up: the config does not exist


ROUTE_IDS = ["CHG\n", "CHG-\u00e9", "A" * 10_000, "..", "%00", "a\x00b", "\ud800", ""]


async def test_an_id_in_the_route_that_is_not_one_is_400_or_404(host: Host) -> None:
    for request_id in ROUTE_IDS:
        request = func.HttpRequest(
            "GET", "/api/requests/x", body=b"", route_params={"request_id": request_id}
        )
        response = await function_app.http_request(request)
        assert response.status_code in {400, 404}, request_id
        assert_problem(response, response.status_code)
    for config_id in [*ROUTE_IDS, "contoso~payments~kv-reader\n", "..~..~x", "a%2F..%2Fb"]:
        for handler in (function_app.http_plan, function_app.http_status):
            request = func.HttpRequest(
                "GET", "/api/configs/x", body=b"", route_params={"config_id": config_id}
            )
            response = await handler(request)
            assert response.status_code in {400, 404}, config_id
            assert_problem(response, response.status_code)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
            ),
            max_leaves=30,
        ).map(lambda value: json.dumps(value).encode()),
        st.dictionaries(
            st.sampled_from(["configIds", "all", "dryRun", "x"]), st.just(["a"]) | st.booleans() | st.none()
        ).map(lambda value: json.dumps(value).encode()),
    ),
    content_type=st.sampled_from(
        [None, "application/json", "text/plain", "application/json; charset=latin-1", ""]
    ),
)
async def test_no_body_gives_a_500(host: Host, body: bytes, content_type: str | None) -> None:
    response = await function_app.http_reconcile(post(body, content_type))
    assert response.status_code in {200, 400, 404, 413, 415}, response.get_body()[:300]
    if response.status_code != 200:
        assert_problem(response, response.status_code)
