"""Property-based fuzzing of every documented operation of a live ``serve`` (schemathesis).

With a valid key, schemathesis generates valid and invalid requests from ``/openapi.json``;
every response must be documented (status code, content type, headers, body schema) and no
response may be a 5xx. Bounded: at most 30 examples per operation and phase.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest
import schemathesis
from api_dataset import API_KEY, start_collector
from hypothesis import HealthCheck, given, settings
from schemathesis import BaseSchema, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from support.mosquitto import MosquittoServer, mosquitto_available

if TYPE_CHECKING:
    from collections.abc import Iterator

    from support.collector import Collector
    from support.postgres import PostgresServer

pytestmark = pytest.mark.integration

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# negative_data_rejection is left out: query values are strings on the wire, so a "negative"
# number 0.0 for a string parameter arrives as the valid string "0.0" (a false alarm). The
# refusals it would check (unknown parameters, bad patterns, ranges) are tested directly.
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fuzz_collector(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Collector]:
    if not mosquitto_available():
        pytest.skip("mosquitto is not installed")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fuzz-sqlite')}/iot.db"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database("api_fuzz")
    broker = MosquittoServer()
    broker.start()
    collector = start_collector(broker, url, tmp_path_factory.mktemp("fuzz"))
    try:
        readings = [
            {"device_id": f"fuzz-{d}", "sensor_type": s, "value": d + i, "timestamp": 1.7e9 + i}
            for d in range(3)
            for s in ("temperature", "humidity")
            for i in range(50)
        ]
        response = httpx.post(collector.base_url + "/api/data", json=readings, headers=AUTH)
        assert response.status_code == 201, response.text
        yield collector
    finally:
        collector.ensure_stopped()
        broker.cleanup()


OPERATIONS = [
    ("GET", "/api/data"),
    ("POST", "/api/data"),
    ("GET", "/api/data/aggregate"),
    ("GET", "/api/devices"),
    ("GET", "/api/devices/{device_id}"),
    ("GET", "/api/rejected"),
    ("POST", "/api/rejected/replay"),
    ("GET", "/api/health"),
    ("GET", "/api/info"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
]


@pytest.fixture(scope="module")
def live_schema(fuzz_collector: Collector) -> BaseSchema:
    loaded = schemathesis.openapi.from_url(fuzz_collector.base_url + "/openapi.json")
    raw = httpx.get(fuzz_collector.base_url + "/openapi.json", timeout=10).json()
    documented = {(m.upper(), path) for path, item in raw["paths"].items() for m in item}
    assert documented == set(OPERATIONS)
    return loaded


# Negative data (what the schema forbids) needs something to violate: parameters or a body.
WITHOUT_INPUT = {"/api/health", "/healthz", "/readyz", "/metrics"}
CASES = [
    (method, path, mode)
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or path not in WITHOUT_INPUT
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_every_operation_conforms_and_never_fails(
    live_schema: BaseSchema, method: str, path: str, mode: GenerationMode
) -> None:
    operation = live_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def run(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=30)

    run()
