"""Secrets out of everything we print or log: one helper for URLs, one for any text.

:func:`redact_url` shows a URL with its password as ``***`` (in the userinfo and in any
``password=`` / ``sslpassword=`` query parameter); the ``up`` banner, configuration errors and
backups print URLs only through it. :class:`Redactor` scrubs a text of the configured secret
values, as written and percent-decoded (a driver message may quote either: psycopg says
``invalid percent-encoded token: "S3CRET%ZZPW"``), and of anything shaped like a URL password
or a ``password=`` parameter; the log formatters pass every line through it (logs.py).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote

if TYPE_CHECKING:
    from collections.abc import Iterable

    from iotcollector.config import Settings

__all__ = ["MASK", "Redactor", "redact_url", "settings_secrets", "url_secrets"]

MASK: Final = "***"
# Shorter values are not scrubbed from free text: masking every "pw" in every log line would
# make logs unreadable, and a secret of one to three characters protects nothing anyway.
MIN_SECRET_CHARS: Final = 4

# `password=...` or `sslpassword=...` in a query string or a libpq conninfo (`password='x y'`).
_PASSWORD_PARAM: Final = re.compile(
    r"(?i)\b((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s'\",;)]+)"
)
_MASKED_PARAM: Final = rf"\1{MASK}"
# `scheme://user:password@` anywhere in a text.
_URL_USERINFO: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]*:)[^\s@]*@")


def redact_url(url: str) -> str:
    """``url`` with its password(s) replaced by ``***``; the rest left readable."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _PASSWORD_PARAM.sub(_MASKED_PARAM, url)
    # The last '@' ends the userinfo: a password may hold '/', '?' or '#' unescaped, and
    # splitting too far right only hides more.
    userinfo, at, tail = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}:{MASK}@{tail}" if colon else f"{userinfo}@{tail}"
    return f"{scheme}://" + _PASSWORD_PARAM.sub(_MASKED_PARAM, rest)


def url_secrets(url: str) -> list[str]:
    """The secret parts of ``url``: its password and ``password=`` values, raw and decoded."""
    found: list[str] = []
    _, sep, rest = url.partition("://")
    if sep:
        userinfo, at, _ = rest.rpartition("@")
        if at and ":" in userinfo:
            found.append(userinfo.partition(":")[2])
    found.extend(m.group(2).strip("'") for m in _PASSWORD_PARAM.finditer(url))
    return _with_decoded(found)


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret value the settings hold (database and MQTT passwords, API keys)."""
    found = url_secrets(settings.database_url.get_secret_value())
    found += url_secrets(settings.mqtt_url)
    if settings.mqtt_password is not None:
        found.append(settings.mqtt_password.get_secret_value())
    found.extend(settings.api_key_values)
    return _with_decoded(found)


def _with_decoded(values: Iterable[str]) -> list[str]:
    out: dict[str, None] = {}
    for value in values:
        out[value] = None
        out[unquote(value)] = None
    return [v for v in out if v]


class Redactor:
    """Scrubs known secret values and URL-shaped passwords out of a text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first: a secret that contains another is masked whole.
        values = {s for s in secrets if len(s) >= MIN_SECRET_CHARS}
        ordered = sorted(values, key=len, reverse=True)
        self._known = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __repr__(self) -> str:
        return "Redactor(<secrets>)"

    def redact(self, text: str) -> str:
        if self._known is not None:
            text = self._known.sub(MASK, text)
        text = _URL_USERINFO.sub(rf"\1{MASK}@", text)
        return _PASSWORD_PARAM.sub(_MASKED_PARAM, text)
