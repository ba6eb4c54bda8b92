"""Bearer-key authentication of ``/api/*``: constant-time, keys never logged nor echoed."""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Annotated

from fastapi import HTTPException, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable


class ApiKeys:
    """The accepted keys, kept only as SHA-256 digests.

    Comparing digests of equal length with :func:`hmac.compare_digest`, against every key
    without stopping at a match, takes the same time whatever the presented token is: it
    reveals neither a key's length nor which key matched.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple(_digest(k) for k in keys)

    def __bool__(self) -> bool:
        return bool(self._digests)

    def __repr__(self) -> str:
        return f"ApiKeys(<{len(self._digests)} keys>)"

    def matches(self, token: str) -> bool:
        presented = _digest(token)
        found = False
        for digest in self._digests:
            found |= hmac.compare_digest(presented, digest)
        return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


# The scheme only parses the header and documents it in OpenAPI; it holds no state. It is at
# module level because FastAPI resolves the dependency's annotations in the module's globals.
BEARER_SCHEME = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    description="One of the keys of IOT_API_KEYS / IOT_API_KEYS_FILE: "
    "`Authorization: Bearer <key>`.",
)


def bearer_guard(keys: ApiKeys) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency that lets a request through only with a valid bearer key."""

    async def require_key(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER_SCHEME)],
    ) -> None:
        if credentials is None or not credentials.credentials:
            raise HTTPException(
                status_code=401,
                detail="an Authorization: Bearer <key> header is required",
                headers={"WWW-Authenticate": 'Bearer realm="iot-collector"'},
            )
        if not keys.matches(credentials.credentials):
            raise HTTPException(
                status_code=401,
                detail="the bearer key is not valid",
                headers={"WWW-Authenticate": 'Bearer realm="iot-collector", error="invalid_token"'},
            )

    return require_key
