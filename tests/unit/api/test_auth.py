from __future__ import annotations

import httpx
from fastapi import Depends, FastAPI

from iotcollector.api.auth import ApiKeys, bearer_guard

KEY = "a-long-enough-key-0001"
OTHER = "another-long-key-0002"


def test_matches_any_configured_key_and_nothing_else() -> None:
    keys = ApiKeys([KEY, OTHER])
    assert keys
    assert keys.matches(KEY)
    assert keys.matches(OTHER)
    for wrong in ("", KEY[:-1], KEY + "x", KEY.upper(), " " + KEY, "\udcff", "é" * 30):
        assert not keys.matches(wrong)


def test_no_keys() -> None:
    keys = ApiKeys([])
    assert not keys
    assert not keys.matches("")


def test_keys_are_not_kept_nor_shown() -> None:
    keys = ApiKeys([KEY])
    assert KEY not in repr(keys)
    assert KEY not in str(vars(keys) if hasattr(keys, "__dict__") else keys._digests)
    assert all(KEY.encode() not in d for d in keys._digests)


def _client() -> httpx.AsyncClient:
    app = FastAPI()

    @app.get("/p", dependencies=[Depends(bearer_guard(ApiKeys([KEY])))])
    async def protected() -> dict[str, bool]:
        return {"ok": True}

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_guard() -> None:
    client = _client()
    ok = await client.get("/p", headers={"Authorization": f"Bearer {KEY}"})
    assert ok.json() == {"ok": True}
    assert (await client.get("/p", headers={"Authorization": f"bearer {KEY}"})).status_code == 200
    missing = await client.get("/p")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="iot-collector"'
    for header in (f"Bearer {OTHER}", f"Basic {KEY}", "Bearer", "Bearer ", KEY):
        response = await client.get("/p", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert KEY not in response.text
