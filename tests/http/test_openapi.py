"""GET /openapi.json describes every route, and schemathesis holds the real server to it.

The schemathesis run covers every operation, the admin routes included (with the token, on a server of its own whose
model repository is a copy in tmp_path, so its promotions and unloads disturb no other test), with these checks:
no server error, every status and Content-Type and header documented, every body matching its schema, schema-invalid
requests refused with a 4xx, and other methods answered 405 with `Allow`. `positive_data_acceptance` is left out:
whether a schema-valid predict body is accepted depends on the model (its number of features, its fields), which the
document cannot say, and a 422 for it is documented.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import msgpack
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from fastserve.http.openapi import document
from tests.conftest import MODELS, Server, start_server

TOKEN = "fuzz-admin-token-0123456789"
EXAMPLES = 50  # per operation
ROUTES = [  # (method, path) of every route the app serves, from http/app.py and http/admin.py
    ("post", "/v1/models/{name}/predict"), ("post", "/v1/models/{name}/versions/{version}/predict"),
    ("get", "/v1/models"), ("get", "/v1/models/{name}"), ("get", "/v1/models/{name}/drift"),
    ("post", "/v1/models/{name}/feedback"), ("get", "/v1/models/{name}/quality"), ("get", "/healthz"),
    ("get", "/readyz"), ("get", "/metrics"), ("get", "/openapi.json"),
    ("post", "/v1/admin/models/{name}/versions/{version}/load"),
    ("post", "/v1/admin/models/{name}/versions/{version}/unload"),
    ("post", "/v1/admin/models/{name}/versions/{version}/promote"), ("post", "/v1/admin/models/{name}/rollback"),
    ("post", "/v1/admin/models/{name}/canary"), ("delete", "/v1/admin/models/{name}/canary"),
    ("post", "/v1/admin/models/{name}/canary/promote"), ("post", "/v1/admin/models/{name}/shadows/{version}"),
    ("delete", "/v1/admin/models/{name}/shadows/{version}"), ("post", "/v1/admin/reload"),
    ("get", "/v2"), ("get", "/v2/health/live"), ("get", "/v2/health/ready"), ("get", "/v2/models/{name}"),
    ("get", "/v2/models/{name}/versions/{version}"), ("get", "/v2/models/{name}/ready"),
    ("get", "/v2/models/{name}/versions/{version}/ready"), ("post", "/v2/models/{name}/infer"),
    ("post", "/v2/models/{name}/versions/{version}/infer"),
]


@schemathesis.deserializer("application/msgpack")
def _from_msgpack(ctx: Any, response: Any) -> Any:
    return msgpack.unpackb(response.content)


def _msgpack_ints(value: Any) -> Any:
    """msgpack holds integers of 64 bits at most; a client with a larger one can only send it as a float."""
    if isinstance(value, dict):
        return {k: _msgpack_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_msgpack_ints(v) for v in value]
    if type(value) is int and not -(2**63) <= value < 2**64:
        return float(value) if abs(value) < 2**1023 else float("inf") * (1 if value > 0 else -1)
    return value


@schemathesis.serializer("application/msgpack")
def _to_msgpack(ctx: Any, value: Any) -> bytes:
    return msgpack.packb(_msgpack_ints(value), use_bin_type=True)


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    models = tmp_path_factory.mktemp("openapi-models")
    for name in ("churn", "spend"):
        shutil.copytree(MODELS / name, models / name)
    shutil.copytree(MODELS / "churn" / "1", models / "churn" / "2")  # two versions: canary, shadow, rollback
    server = start_server(models, env={"FASTSERVE_ADMIN_TOKEN": TOKEN})
    yield server
    log = server.stop()
    assert "Traceback" not in log, log


# The document as the module builds it (the test below checks the server serves exactly this), so the operations
# are known at collection, before any server runs; each case is sent to the server of this module.
schema = schemathesis.openapi.from_dict(document(), config=schemathesis.Config.from_dict({
        "generation": {"max-examples": EXAMPLES, "mode": "all"},  # schema-valid and schema-invalid requests
        "phases": {"stateful": {"enabled": False}},
        "auth": {"openapi": {"adminToken": {"bearer": TOKEN}}},
        "checks": {
            # A 503 is a documented refusal (a deadline the client set that cannot be met), not a server error.
            "not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]},
            "positive_data_acceptance": {"enabled": False},
        },
}))


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_server_conforms_to_its_openapi_document(admin_server, case):
    case.call_and_validate(base_url=admin_server.url)


def test_document_lists_every_route_and_is_served_as_built(client):
    r = client.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    served = r.json()
    assert served == document() and served["openapi"].startswith("3.")
    assert sorted((m, p) for p, item in served["paths"].items() for m in item if m in ("get", "post", "delete")) \
        == sorted(ROUTES)


def test_document_is_valid_openapi_3_1():
    import jsonschema_rs
    from schemathesis.specs.openapi.definitions import OPENAPI_31  # the OpenAPI 3.1 schema, as schemathesis ships it

    errors = [str(e) for e in jsonschema_rs.validator_for(OPENAPI_31).iter_errors(document())]
    assert errors == []


def test_predict_documents_every_status_it_answers(client):
    predict = document()["paths"]["/v1/models/{name}/predict"]["post"]
    assert set(predict["responses"]) == {"200", "400", "404", "406", "413", "415", "422", "429", "500", "503"}
    assert "X-Model-Version" in predict["responses"]["200"]["headers"]
    body = predict["requestBody"]["content"]
    assert set(body) == {"application/json", "application/msgpack"}
    r = client.post("/v1/models/churn/predict", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400 and set(r.json()["error"]) == {"code", "message", "detail"}


def test_admin_routes_need_the_bearer_token():
    doc = document()
    assert doc["components"]["securitySchemes"]["adminToken"] == {
        "type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]["adminToken"][
            "description"]}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "description":
                continue
            admin = path.startswith("/v1/admin/")
            assert (op.get("security") == [{"adminToken": []}]) == admin, (method, path)
            if admin:
                assert {"401", "403"} <= set(op["responses"]), (method, path)


def test_admin_call_without_the_token_is_refused_as_documented(admin_server):
    r = httpx.post(f"{admin_server.url}/v1/admin/reload")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["error"]["code"] == "unauthorized"





def test_canary_sticky_header_must_be_a_header_name(admin_server):
    """A header name outside latin-1 crashed building the canary (a 500); it can never match a header anyway."""
    auth = {"authorization": f"Bearer {TOKEN}"}
    for sticky in ("header:\u20ac", "header:", "", "header:X User"):
        r = httpx.post(f"{admin_server.url}/v1/admin/models/churn/canary", headers=auth,
                       json={"version": 1, "weight": 0.1, "sticky_key": sticky})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["detail"] == {"path": "$.sticky_key"}


def test_a_path_with_two_methods_allows_both(admin_server):
    """Two Routes on one path each answered 405 with only their own method in Allow."""
    for path in ("/v1/admin/models/churn/canary", "/v1/admin/models/churn/shadows/2"):
        r = httpx.put(f"{admin_server.url}{path}")
        assert r.status_code == 405 and sorted(r.headers["allow"].split(", ")) == ["DELETE", "POST"], r.headers
