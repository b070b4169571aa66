"""The OpenAPI document matches the code: schemathesis against the API under gunicorn."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import BASE_CONFIG, Project, Receiver, running_receiver

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def schema_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    """One gunicorn for the whole schema run, so the run stays short."""
    project = Project(tmp_path_factory.mktemp("schema"))
    project.write_config(BASE_CONFIG)
    with running_receiver(project, extra_env={"ROUTEMAIL_SEND_KEY": "schema-send-key"}) as r:
        yield r


def test_api_conforms_to_its_openapi_document(schema_server: Receiver) -> None:
    """Generated requests, valid and invalid, never get a server error or an undocumented answer."""
    schema = schemathesis.openapi.from_url(schema_server.url + "/api/v1/openapi.json")
    base_url = schema_server.url + "/api/v1"
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 22

    for operation, mode in itertools.product(operations, GenerationMode):
        if (
            mode is GenerationMode.NEGATIVE
            and operation.path == "/lists"
            and operation.method == "get"
        ):
            continue  # nothing in it to make invalid

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=12,
            deadline=None,
            database=None,
            derandomize=True,  # the same cases every run: CI is not a lottery
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def conforms(case: schemathesis.Case) -> None:
            with requests.Session() as session:
                case.call_and_validate(base_url=base_url, session=session, checks=CHECKS)

        conforms()
