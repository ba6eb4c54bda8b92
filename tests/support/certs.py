"""Throw-away certificate authorities for TLS tests: scripts/make-certs.py, driven from Python."""

from __future__ import annotations

import datetime as dt
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import ModuleType

MAKE_CERTS = Path(__file__).resolve().parents[2] / "scripts" / "make-certs.py"


def _load_make_certs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_certs", MAKE_CERTS)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_certs = _load_make_certs()


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


class CertificateAuthority:
    """A CA in ``directory`` (``ca.pem``/``ca.key``), issuing certificates beside it."""

    def __init__(self, directory: Path, name: str = "iot-test-ca") -> None:
        self.dir = directory
        make_certs.make_ca(directory, common_name=name, days=30)
        self.cert_path = directory / f"{make_certs.CA_NAME}.pem"

    def issue(self, common_name: str, *, server: bool = False, expired: bool = False) -> Issued:
        now = dt.datetime.now(dt.UTC)
        cert, key = make_certs.issue(
            self.dir,
            common_name,
            server=server,
            sans=("localhost", "127.0.0.1") if server else (),
            days=30,
            not_before=now - dt.timedelta(days=10) if expired else None,
            not_after=now - dt.timedelta(days=1) if expired else None,
        )
        return Issued(cert, key)
