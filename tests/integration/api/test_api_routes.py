"""Every ``/api`` route against a running ``serve``, on SQLite and PostgreSQL (conftest.py)."""

from __future__ import annotations

import csv
import io
import math
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest
from api_dataset import (
    API_KEY,
    DEVICES,
    FILE_KEY,
    INSTANTS,
    OFFLINE_AFTER_S,
    SECOND_KEY,
    SENSORS,
    Api,
    Expected,
    _api,  # noqa: F401 - the fixtures
    _api_broker,  # noqa: F401
    _api_database_url,  # noqa: F401
    iso,
)

from support.collector import publish

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.integration

Key = tuple[str, str, datetime]


def _key(row: dict[str, Any]) -> Key:
    return (row["device_id"], row["sensor_type"], datetime.fromisoformat(row["timestamp"]))


def _expected_key(r: Expected) -> Key:
    return (r.device_id, r.sensor_type, r.timestamp)


def _pages(api: Api, **params: object) -> Iterator[dict[str, Any]]:
    """Every page of GET /api/data for ``params``, following next_cursor."""
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = api.get("/api/data", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        yield page
        cursor = page["next_cursor"]
        if cursor is None:
            return


def _all_rows(api: Api, **params: object) -> list[dict[str, Any]]:
    return [row for page in _pages(api, **params) for row in page["data"]]


def _assert_newest_first(rows: list[dict[str, Any]]) -> None:
    order = [(datetime.fromisoformat(r["timestamp"]), r["id"]) for r in rows]
    assert order == sorted(order, reverse=True)


def _select(api: Api, keep: Callable[[Expected], bool]) -> list[Expected]:
    return [r for r in api.readings if keep(r)]


def _end(api: Api) -> datetime:
    return api.start + timedelta(seconds=INSTANTS)


# -- GET /api/data: pagination, filters, time ranges -----------------------------------------


def test_cursor_pagination_over_every_row_misses_and_repeats_nothing(api: Api) -> None:
    rows = _all_rows(api, limit=1000)
    assert len(rows) == len(api.readings) == 25_000
    assert len({r["id"] for r in rows}) == 25_000
    _assert_newest_first(rows)
    by_key = {_key(r): r for r in rows}
    assert set(by_key) == {_expected_key(r) for r in api.readings}
    for expected in api.readings[::997]:
        row = by_key[_expected_key(expected)]
        assert row["value"] == expected.value
        assert row["unit"] == expected.unit


def test_default_page_is_100_newest(api: Api) -> None:
    page = api.get("/api/data", params={"to": iso(_end(api))}).json()
    assert len(page["data"]) == 100
    assert page["next_cursor"] is not None
    newest = sorted(api.readings, key=lambda r: r.timestamp, reverse=True)[:100]
    assert {_key(r) for r in page["data"]} == {_expected_key(r) for r in newest}


@pytest.mark.parametrize(
    ("params", "keep"),
    [
        ({"device_id": "api-dev-3"}, lambda r: r.device_id == "api-dev-3"),
        ({"sensor_type": "humidity"}, lambda r: r.sensor_type == "humidity"),
        (
            {"device_id": "api-dev-1", "sensor_type": "temperature"},
            lambda r: r.device_id == "api-dev-1" and r.sensor_type == "temperature",
        ),
    ],
    ids=["device", "sensor", "device+sensor"],
)
def test_filters_paginate_exactly(
    api: Api, params: dict[str, str], keep: Callable[[Expected], bool]
) -> None:
    rows = _all_rows(api, limit=777, to=iso(_end(api)), **params)
    expected = _select(api, keep)
    assert len(rows) == len(expected)
    assert {_key(r) for r in rows} == {_expected_key(r) for r in expected}
    assert len({r["id"] for r in rows}) == len(rows)
    _assert_newest_first(rows)


def test_time_range_from_inclusive_to_exclusive_in_every_notation(api: Api) -> None:
    start = api.start + timedelta(seconds=100)
    end = api.start + timedelta(seconds=160)
    expected = {
        _expected_key(r)
        for r in _select(api, lambda r: r.device_id == "api-dev-2" and start <= r.timestamp < end)
    }
    assert len(expected) == 60 * len(SENSORS)
    notations = [
        (iso(start), iso(end)),
        (str(int(start.timestamp())), str(int(end.timestamp()))),
        (str(int(start.timestamp() * 1000)), str(int(end.timestamp() * 1000))),
        (start.astimezone(timezone_plus_2()).isoformat(), end.isoformat()),
        (start.replace(tzinfo=None).isoformat(), end.replace(tzinfo=None).isoformat()),
    ]
    for start_text, end_text in notations:
        rows = _all_rows(
            api, device_id="api-dev-2", limit=50, **{"from": start_text, "to": end_text}
        )
        assert {_key(r) for r in rows} == expected, (start_text, end_text)


def timezone_plus_2() -> Any:
    from datetime import timezone  # noqa: PLC0415

    return timezone(timedelta(hours=2))


def test_empty_result(api: Api) -> None:
    page = api.get("/api/data", params={"device_id": "never-seen"}).json()
    assert page == {"data": [], "next_cursor": None}


# -- CSV -------------------------------------------------------------------------------------


def _csv(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


def test_csv_by_accept_header_and_by_format(api: Api) -> None:
    params = {"device_id": "api-dev-4", "to": iso(_end(api))}
    expected = _select(api, lambda r: r.device_id == "api-dev-4")
    by_accept = _csv(api.get("/api/data", params=params, headers={"Accept": "text/csv"}))
    by_format = _csv(api.get("/api/data", params={**params, "format": "csv"}))
    assert by_accept == by_format
    # Every matching row (5,000: more than one 5,000-row database page plus the check of the
    # next), not one JSON page.
    assert len(by_accept) == len(expected) == 5000
    assert list(by_accept[0]) == ["id", "device_id", "sensor_type", "value", "unit", "timestamp"]
    got = {
        (r["device_id"], r["sensor_type"], datetime.fromisoformat(r["timestamp"])): float(
            r["value"]
        )
        for r in by_accept
    }
    assert got == {_expected_key(r): r.value for r in expected}


def test_csv_streams_everything_across_pages_and_honours_limit(api: Api) -> None:
    with api.client.stream(
        "GET", "/api/data", params={"format": "csv", "to": iso(_end(api))}
    ) as response:
        assert response.status_code == 200
        assert "content-length" not in response.headers  # streamed, chunked
        lines = sum(chunk.count("\n") for chunk in response.iter_text())
    assert lines == 25_000 + 1
    limited = _csv(api.get("/api/data", params={"format": "csv", "limit": 7}))
    assert len(limited) == 7


def test_json_wins_unless_csv_is_preferred(api: Api) -> None:
    for accept in ("application/json", "*/*", "text/csv;q=0.5, application/json"):
        response = api.get("/api/data", params={"limit": 1}, headers={"Accept": accept})
        assert response.headers["content-type"] == "application/json", accept
    response = api.get(
        "/api/data", params={"limit": 1, "format": "json"}, headers={"Accept": "text/csv"}
    )
    assert response.headers["content-type"] == "application/json"


# -- aggregates ------------------------------------------------------------------------------


def _buckets(readings: list[Expected], width_s: int) -> dict[datetime, list[float]]:
    out: dict[datetime, list[float]] = {}
    for r in readings:
        epoch = int(r.timestamp.timestamp())
        start = datetime.fromtimestamp(epoch - epoch % width_s, UTC)
        out.setdefault(start, []).append(r.value)
    return out


def _assert_aggregates(body: dict[str, Any], expected: dict[datetime, list[float]]) -> None:
    got = {datetime.fromisoformat(b["bucket_start"]): b for b in body["data"]}
    assert list(got) == sorted(got)
    assert set(got) == set(expected)
    for start, values in expected.items():
        bucket = got[start]
        assert bucket["count"] == len(values)
        assert bucket["min"] == min(values)
        assert bucket["max"] == max(values)
        assert math.isclose(bucket["avg"], sum(values) / len(values), rel_tol=1e-9)


@pytest.mark.parametrize(("bucket", "width_s"), [("60s", 60), ("5m", 300), ("1h", 3600)])
def test_aggregate_one_device_matches_values_computed_here(
    api: Api, bucket: str, width_s: int
) -> None:
    start = api.start + timedelta(seconds=37)
    end = api.start + timedelta(seconds=2000)
    expected = _select(
        api,
        lambda r: (
            r.device_id == "api-dev-0"
            and r.sensor_type == "temperature"
            and start <= r.timestamp < end
        ),
    )
    response = api.get(
        "/api/data/aggregate",
        params={
            "device_id": "api-dev-0",
            "sensor_type": "temperature",
            "from": iso(start),
            "to": iso(end),
            "bucket": bucket,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["bucket"] == {"60s": "1m"}.get(bucket, bucket)  # normalised
    assert body["device_id"] == "api-dev-0"
    _assert_aggregates(body, _buckets(expected, width_s))


def test_aggregate_every_device_of_a_sensor_type(api: Api) -> None:
    expected = _select(api, lambda r: r.sensor_type == "humidity")
    response = api.get(
        "/api/data/aggregate",
        params={
            "sensor_type": "humidity",
            "from": str(int(api.start.timestamp())),
            "to": iso(_end(api)),
            "bucket": "10m",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["device_id"] is None
    _assert_aggregates(body, _buckets(expected, 600))
    assert sum(b["count"] for b in body["data"]) == len(expected)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"bucket": "5 m"}, "bucket"),
        ({"bucket": "0s"}, "bucket"),
        ({"bucket": "05m"}, "bucket"),
        ({"bucket": "1w"}, "bucket"),
        ({"bucket": "1.5h"}, "bucket"),
        ({"bucket": "367d"}, "bucket"),
        ({"bucket": "1s", "from": "2026-01-01", "to": "2026-01-02"}, "bucket"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-01-02", "to": "2026-01-01"}, "to"),
        ({"sensor_type": None}, "sensor_type"),
        ({"from": None}, "from"),
        ({"sensor_type": "no spaces"}, "sensor_type"),
    ],
)
def test_aggregate_bad_parameters_are_422(api: Api, params: dict[str, Any], param: str) -> None:
    query = {"sensor_type": "temperature", "from": "2026-01-01", "to": "2026-01-01T01:00:00Z"}
    query.update(params)
    query = {k: v for k, v in query.items() if v is not None}
    response = api.get("/api/data/aggregate", params=query)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert [d["loc"] for d in error["details"]] == [["query", param]]


# -- devices ---------------------------------------------------------------------------------


def test_devices_list_detail_and_pagination(api: Api) -> None:
    body = api.get("/api/devices", params={"limit": 1000}).json()
    devices = {d["device_id"]: d for d in body["data"]}
    assert set(DEVICES) <= set(devices)
    for device_id in DEVICES:
        assert devices[device_id]["sensor_types"] == list(SENSORS)
        assert devices[device_id]["status"] in {"online", "offline"}
        first = datetime.fromisoformat(devices[device_id]["first_seen"])
        last = datetime.fromisoformat(devices[device_id]["last_seen"])
        assert first <= last
    one = api.get("/api/devices/api-dev-2")
    assert one.status_code == 200
    assert one.json() == devices["api-dev-2"] | {"status": one.json()["status"]}
    paged: list[str] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get("/api/devices", params=params).json()
        paged += [d["device_id"] for d in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == sorted(devices)


def test_unknown_device_is_404_in_the_error_shape(api: Api) -> None:
    response = api.get("/api/devices/not-a-device")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert api.get("/api/devices/bad%20id").status_code == 422


def test_device_turns_offline_after_the_timeout_and_back_online(api: Api) -> None:
    device = f"api-status-{api.collector.port}"
    reading = {"device_id": device, "sensor_type": "temperature", "value": 1}
    publish(api.broker.url, [orjson.dumps(reading)], publishers=1)
    _wait_for(lambda: api.get(f"/api/devices/{device}").status_code == 200)
    assert api.get(f"/api/devices/{device}").json()["status"] == "online"
    online = {
        d["device_id"]
        for d in api.get("/api/devices", params={"status": "online", "limit": 1000}).json()["data"]
    }
    assert device in online
    time.sleep(OFFLINE_AFTER_S + 0.5)
    assert api.get(f"/api/devices/{device}").json()["status"] == "offline"
    offline = api.get("/api/devices", params={"status": "offline", "limit": 1000}).json()["data"]
    assert device in {d["device_id"] for d in offline}
    assert all(d["status"] == "offline" for d in offline)
    posted = api.client.post("/api/data", json={**reading, "value": 2})
    assert posted.status_code == 201
    assert api.get(f"/api/devices/{device}").json()["status"] == "online"


def _wait_for(condition: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


# -- auth and the open endpoints -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/data"),
        ("POST", "/api/data"),
        ("GET", "/api/data/aggregate?sensor_type=t&from=2026-11-01&to=2026-11-02&bucket=1h"),
        ("GET", "/api/devices"),
        ("GET", "/api/devices/api-dev-0"),
        ("GET", "/api/health"),
    ],
)
def test_every_api_route_needs_a_valid_key(api: Api, method: str, path: str) -> None:
    url = api.collector.base_url + path
    body = b'{"device_id":"x","sensor_type":"y","value":1}' if method == "POST" else None
    for headers, expected_code in [
        ({}, "unauthorized"),
        ({"Authorization": "Bearer wrong-key-0123456789abcdef"}, "unauthorized"),
        ({"Authorization": f"Basic {API_KEY}"}, "unauthorized"),
        ({"Authorization": f"Bearer {API_KEY}x"}, "unauthorized"),
    ]:
        response = httpx.request(method, url, headers=headers, content=body, timeout=10)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
        error = response.json()["error"]
        assert error["code"] == expected_code
        assert API_KEY not in response.text
    for key in (API_KEY, SECOND_KEY, FILE_KEY):
        if method == "GET":
            response = httpx.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=10)
            assert response.status_code in {200, 404}, response.text
    assert API_KEY not in api.collector.log()
    assert FILE_KEY not in api.collector.log()


def test_health_readiness_metrics_and_docs_stay_open(api: Api) -> None:
    base = api.collector.base_url
    assert httpx.get(base + "/healthz").json() == {"status": "ok"}
    assert httpx.get(base + "/readyz").status_code == 200
    assert httpx.get(base + "/metrics").status_code == 200
    assert httpx.get(base + "/openapi.json").status_code == 200
    assert httpx.get(base + "/docs").status_code == 200
    assert api.get("/api/health").json() == {"status": "ok"}


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 10_001}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"from": "not a time"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": "99999999999999999"}, "from"),
        ({"from": "2026-01-02", "to": "2026-01-01"}, "to"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"cursor": "AAAA"}, "cursor"),
        ({"device_id": "x" * 51}, "device_id"),
        ({"sensor_type": "a/b"}, "sensor_type"),
        ({"format": "xml"}, "format"),
    ],
)
def test_bad_query_parameters_are_422_naming_the_parameter(
    api: Api, params: dict[str, object], param: str
) -> None:
    response = api.get("/api/data", params=params)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["details"][0]["loc"] == ["query", param]


def test_unknown_query_parameters_are_422_not_ignored(api: Api) -> None:
    response = api.get("/api/data", params={"devce_id": "api-dev-1"})
    assert response.status_code == 422
    details = response.json()["error"]["details"]
    assert details[0]["loc"] == ["query", "devce_id"]
    assert "device_id" in details[0]["message"]
    assert api.get("/api/health", params={"x": "1"}).status_code == 422


def test_unknown_route_and_method_use_the_error_shape(api: Api) -> None:
    response = api.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    response = api.client.delete("/api/data")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/api/data", {"GET", "POST"}),
        ("PUT", "/api/data", {"GET", "POST"}),
        ("POST", "/api/devices", {"GET"}),
        ("DELETE", "/api/devices/api-dev-1", {"GET"}),
    ],
)
def test_405_allow_lists_every_method_of_the_path(
    api: Api, method: str, path: str, allowed: set[str]
) -> None:
    """Schemathesis ST205: GET and POST /api/data are two routes; Allow names both."""
    response = api.client.request(method, path)
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == allowed
    for listed in allowed:
        assert api.client.request(listed, path).status_code != 405


def test_http_metrics_use_route_templates(api: Api) -> None:
    api.get("/api/devices/api-dev-1")
    api.get("/api/devices/some-unknown-device")
    metrics = api.collector.metrics()
    routes = {k for k in metrics if k.startswith("iotcollector_http_requests_total")}
    assert any("route=/api/devices/{device_id}" in k for k in routes)
    assert not any("api-dev-1" in k or "some-unknown-device" in k for k in routes)
    assert any(
        k.startswith("iotcollector_http_request_duration_seconds_count") and "route=/api/data" in k
        for k in metrics
    )


# -- POST /api/data (writes last: the reads above count the known data set) ------------------


def _count(api: Api, device_id: str) -> int:
    return len(_all_rows(api, device_id=device_id, limit=10_000))


def test_post_one_array_and_multi_sensor_then_duplicates(api: Api) -> None:
    device = f"api-post-{api.collector.port}"
    now = datetime.now(UTC).replace(microsecond=0)
    one = {
        "device_id": device,
        "sensor_type": "co2",
        "value": "0.004",
        "unit": "ppm",
        "timestamp": iso(now - timedelta(seconds=5)),
    }
    array = [
        {
            "device_id": device,
            "sensor_type": "temperature",
            "value": 21.5,
            "timestamp": int((now - timedelta(seconds=4)).timestamp() * 1000),
        },
        {
            "deviceId": device,
            "temperature": "22.5",
            "humidity": 40,
            "timestamp": iso(now - timedelta(seconds=3)),
        },
    ]
    first = api.client.post("/api/data", json=one)
    assert (first.status_code, first.json()) == (201, {"stored": 1, "duplicates": 0})
    second = api.client.post("/api/data", json=array)
    assert (second.status_code, second.json()) == (201, {"stored": 3, "duplicates": 0})
    again = api.client.post("/api/data", json=array)
    assert (again.status_code, again.json()) == (201, {"stored": 0, "duplicates": 3})
    rows = _all_rows(api, device_id=device)
    assert len(rows) == 4
    co2 = next(r for r in rows if r["sensor_type"] == "co2")
    assert co2["value"] == 0.004
    assert co2["unit"] == "ppm"
    humidity = next(r for r in rows if r["sensor_type"] == "humidity")
    assert humidity["unit"] == "%"


def test_post_with_an_invalid_item_is_422_and_stores_nothing(api: Api) -> None:
    device = f"api-bad-{api.collector.port}"
    body = [
        {"device_id": device, "sensor_type": "t", "value": 1},
        {"device_id": device, "sensor_type": "t", "value": "abc"},
        {"device_id": device, "sensor_type": "t", "value": 3, "timestamp": "1999-12-31T00:00:00Z"},
        "not an object",
    ]
    response = api.client.post("/api/data", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_readings"
    assert [(d["index"], d["code"]) for d in error["details"]] == [
        (1, "invalid_value"),
        (2, "timestamp_out_of_range"),
        (3, "wrong_type"),
    ]
    assert all(d["reason"] for d in error["details"])
    assert _count(api, device) == 0
    for raw, code in [(b"{oops", "invalid_json"), (b"[]", "empty_array"), (b"", "invalid_json")]:
        response = api.client.post(
            "/api/data", content=raw, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422
        assert response.json()["error"]["details"] == [
            {
                "index": None,
                "code": code,
                "reason": response.json()["error"]["details"][0]["reason"],
            }
        ]


def test_post_over_the_body_limit_is_413_by_length_and_by_stream(api: Api) -> None:
    big = b"[" + b",".join([b'{"device_id":"big","sensor_type":"t","value":1}'] * 30_000) + b"]"
    assert len(big) > 1024 * 1024
    response = api.client.post(
        "/api/data", content=big, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    response = api.client.post(
        "/api/data", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert _count(api, "big") == 0


def test_post_needs_json(api: Api) -> None:
    response = api.client.post(
        "/api/data",
        content=b"device_id=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert "Content-Type: application/json" in response.json()["error"]["message"]
