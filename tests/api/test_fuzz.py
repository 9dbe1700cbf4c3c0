"""Schemathesis over the whole schema with a member's token: no 5xx, and every
response matches the schema. Path parameters point at real objects of the
member's team (random ids would only ever find 404s); bodies and queries are
generated. Examples per operation are capped to keep the run short."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from apps.api.api import api
from tests.api.test_permissions import ON_EXTERNAL

schema = schemathesis.openapi.from_dict(api.get_openapi_schema())
schema.app = get_wsgi_application()

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

EXAMPLES_PER_OPERATION = 15


@pytest.fixture
def fuzz_world(api_world, settings):
    """As Django's test client does: the WSGI handler must not close the test's
    connection (and its transaction) at the end of each request."""
    settings.API_RATE_LIMIT = "100000/min"
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield api_world
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors_and_responses_match_the_schema(case, fuzz_world):
    run = fuzz_world["external"] if case.operation.path in ON_EXTERNAL else fuzz_world["run"]
    if "/adaptations/{run_id}" in case.operation.path:
        run = fuzz_world["adaptation"].run
    ids = {
        "team": fuzz_world["team"].slug,
        "run_id": run.pk,
        "model_id": fuzz_world["meta_model"].pk,
        "taskset_id": fuzz_world["version"].taskset_id,
        "experiment_id": fuzz_world["experiment"].pk,
        "sweep_id": fuzz_world["sweep"].pk,
        "view_id": fuzz_world["saved_view"].pk,
        "file_id": fuzz_world["run_file"].pk,
        "tag": "baseline",
    }
    for name in case.path_parameters or {}:
        case.path_parameters[name] = ids[name]
    case.call_and_validate(
        headers={"Authorization": f"Bearer {fuzz_world['tokens']['member']}"},
        checks=[
            not_a_server_error,
            response_schema_conformance,
            content_type_conformance,
            status_code_conformance,
        ],
    )
