"""The client TLS context: TLS 1.2+, hostname checks, AWS IoT Core's ALPN on port 443."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from iotcollector.ingest.tls import client_tls_context
from support.certs import CertificateAuthority

if TYPE_CHECKING:
    from pathlib import Path


def test_defaults_verify_the_broker() -> None:
    context = client_tls_context(None, None, None, port=8883)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_client_certificate_and_alpn_on_443(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    device = ca.issue("sensor-1")
    # Loading the chain fails loudly on a mismatched key; on 443 ALPN must not raise.
    context = client_tls_context(ca.cert_path, device.cert, device.key, port=443)
    assert context.verify_mode == ssl.CERT_REQUIRED
