"""The client TLS context: TLS 1.2+, the broker verified, a client certificate presented, and
AWS IoT Core's ALPN on port 443, each shown by a real handshake with an in-memory server."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

import pytest

from iotcollector.ingest.tls import AWS_IOT_ALPN, client_tls_context
from support.certs import CertificateAuthority

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path


def _server_context(ca: CertificateAuthority) -> ssl.SSLContext:
    """A broker that requires a client certificate from ``ca`` and speaks AWS's ALPN."""
    broker = ca.issue("broker", server=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(broker.cert, broker.key)
    context.load_verify_locations(ca.cert_path)
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols([AWS_IOT_ALPN])
    return context


def _handshake(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext, hostname: str = "localhost"
) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """Run a TLS handshake through memory buffers; return (client, server) once both are done."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    from_client, from_server = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, from_client, server_hostname=hostname)
    server = server_context.wrap_bio(to_server, from_server, server_side=True)
    done: set[str] = set()
    for _ in range(20):
        for name, side in (("client", client), ("server", server)):
            if name not in done:
                try:
                    side.do_handshake()
                    done.add(name)
                except ssl.SSLWantReadError:
                    pass
        to_server.write(from_client.read())
        to_client.write(from_server.read())
        if len(done) == 2:
            # TLS 1.3: the server checks the client's certificate after the client is done.
            with pytest.raises(ssl.SSLWantReadError):
                server.read()
            return client, server
    pytest.fail("the TLS handshake did not finish")


def _common_name(cert: Mapping[str, object]) -> str:
    subject = cert["subject"]
    assert isinstance(subject, tuple)
    names = {str(key): str(value) for ((key, value),) in subject}
    return names["commonName"]


def test_defaults_verify_the_broker() -> None:
    context = client_tls_context(None, None, None, port=8883)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_client_certificate_and_alpn_on_443(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    device = ca.issue("sensor-1")
    context = client_tls_context(ca.cert_path, device.cert, device.key, port=443)
    client, server = _handshake(context, _server_context(ca))
    peer = server.getpeercert()
    assert peer is not None
    assert _common_name(peer) == "sensor-1"
    assert server.selected_alpn_protocol() == AWS_IOT_ALPN
    assert client.version() in {"TLSv1.2", "TLSv1.3"}


def test_no_alpn_on_8883(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    device = ca.issue("sensor-1")
    context = client_tls_context(ca.cert_path, device.cert, device.key, port=8883)
    _client, server = _handshake(context, _server_context(ca))
    assert server.selected_alpn_protocol() is None


def test_a_broker_signed_by_another_ca_is_refused(tmp_path: Path) -> None:
    ours = CertificateAuthority(tmp_path / "ours")
    theirs = CertificateAuthority(tmp_path / "theirs", name="someone-else")
    device = ours.issue("sensor-1")
    context = client_tls_context(ours.cert_path, device.cert, device.key, port=8883)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        _handshake(context, _server_context(theirs))


def test_a_broker_with_another_name_is_refused(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    device = ca.issue("sensor-1")
    context = client_tls_context(ca.cert_path, device.cert, device.key, port=8883)
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        _handshake(context, _server_context(ca), hostname="mqtt.elsewhere.example")


def test_a_key_that_does_not_match_the_certificate_fails_at_once(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    one, other = ca.issue("sensor-1"), ca.issue("sensor-2")
    with pytest.raises(ssl.SSLError):
        client_tls_context(ca.cert_path, one.cert, other.key, port=8883)
