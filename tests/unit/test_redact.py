"""The redaction helper: URLs shown without passwords, secrets scrubbed from any text."""

from __future__ import annotations

import pytest

from iotcollector.redact import MASK, Redactor, redact_url, url_secrets


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://iot:S3CRET@db:5432/iot", "postgresql://iot:***@db:5432/iot"),
        ("postgresql://iot:S3CRET%ZZPW@db/iot", "postgresql://iot:***@db/iot"),
        ("postgresql://iot:p@ss/w?rd#x@db/iot", "postgresql://iot:***@db/iot"),
        ("postgresql://u@h/db?password=S3CRETQ", "postgresql://u@h/db?password=***"),
        (
            "postgresql://u@h/db?sslmode=require&password=S3CRETQ&connect_timeout=3",
            "postgresql://u@h/db?sslmode=require&password=***&connect_timeout=3",
        ),
        ("postgresql://u@h/db?sslpassword=KEYPW", "postgresql://u@h/db?sslpassword=***"),
        ("postgresql://iot@db/iot", "postgresql://iot@db/iot"),
        ("sqlite:///./data/iot.db", "sqlite:///./data/iot.db"),
        ("mqtt://dev:MQTTPW@broker:1883", "mqtt://dev:***@broker:1883"),
        ("host=db password=S3CRET user=iot", "host=db password=*** user=iot"),
    ],
)
def test_redact_url_hides_every_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_url_secrets_gives_raw_and_decoded_passwords() -> None:
    assert url_secrets("postgresql://iot:a%40b%ZZ@db/iot?password=q%21q") == [
        "a%40b%ZZ",
        "a@b%ZZ",
        "q%21q",
        "q!q",
    ]
    assert url_secrets("postgresql://iot@db/iot") == []


def test_redactor_masks_known_secrets_however_they_are_quoted() -> None:
    redactor = Redactor(["S3CRET%ZZPW", "api-key-0123456789abcdef", "pw"])
    line = (
        'connect failed: invalid percent-encoded token: "S3CRET%ZZPW"; '
        "key api-key-0123456789abcdef; short pw stays"
    )
    assert redactor.redact(line) == (
        f'connect failed: invalid percent-encoded token: "{MASK}"; key {MASK}; short pw stays'
    )


def test_redactor_masks_url_shaped_passwords_it_was_not_told_about() -> None:
    redactor = Redactor()
    text = "tried postgresql://u:hunter22@h/db then postgresql://u@h/db?password=hunter33 ok"
    out = redactor.redact(text)
    assert "hunter22" not in out
    assert "hunter33" not in out
    assert out == f"tried postgresql://u:{MASK}@h/db then postgresql://u@h/db?password={MASK} ok"


def test_a_longer_secret_is_masked_whole_when_it_contains_a_shorter_one() -> None:
    assert Redactor(["abcd", "abcdefgh"]).redact("x abcdefgh y") == f"x {MASK} y"
