"""The client TLS context for ``mqtts://`` (collector and simulator alike)."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

# AWS IoT Core serves MQTT with client certificates on 443 only to clients that ask for this
# ALPN protocol; on 8883 no ALPN is needed.
AWS_IOT_ALPN = "x-amzn-mqtt-ca"


def client_tls_context(
    ca_file: Path | None, cert_file: Path | None, key_file: Path | None, *, port: int
) -> ssl.SSLContext:
    """TLS >= 1.2 with hostname verification; the given CA (else the system's); a client
    certificate when given."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    if port == 443:
        context.set_alpn_protocols([AWS_IOT_ALPN])
    return context
