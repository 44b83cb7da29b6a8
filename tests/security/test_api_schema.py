"""schemathesis against /api/v1/openapi.json on a live cluster (real replicas + coordinator, the
Flask app in-process over WSGI): no 500 and every response matches the document.

Bounded: at most 30 examples per operation, no shrinking-heavy phases, so the whole module
takes well under two minutes. Requests carry a valid bearer token of a real user, so the
authenticated paths (writes, deletes, follows) are reached, not only their 401s.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip(
    "schemathesis", minversion="4", reason="schemathesis 4 is not installed (pip install -e '.[test]')")
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from webfront.web import create_app

from .conftest import api_signup, sec_config


@pytest.fixture(scope="module")
def api_app(sec_cluster):
    # CSRF does not apply to the API (bearer tokens), so the app is the production one.
    app = create_app(sec_config(sec_cluster))
    client = app.test_client()
    _, token = api_signup(client, "schema_user")
    app.config["SCHEMA_TOKEN"] = token
    return app


@pytest.fixture(scope="module")
def api_schema(api_app):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", api_app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_api_conforms_and_never_500(case, api_app):
    token = api_app.config["SCHEMA_TOKEN"]
    # Keep the schema user alive: deleting it would turn the rest of the run into 401/404s.
    if case.method == "DELETE" and case.path == "/users/{username}":
        case.path_parameters = {**(case.path_parameters or {}), "username": "nobody_here"}
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
    case.call_and_validate(checks=(not_a_server_error, status_code_conformance,
                                   content_type_conformance, response_schema_conformance))
