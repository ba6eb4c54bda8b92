#!/usr/bin/env python3
"""Make a private CA and issue broker, collector and device certificates (local use, tests).

Usage (from the repository root, with the project's virtual environment):

    python scripts/make-certs.py --dir certs ca
    python scripts/make-certs.py --dir certs server mqtt.example.internal --san localhost
    python scripts/make-certs.py --dir certs collector iot-collector-0
    python scripts/make-certs.py --dir certs device sensor-0042

Files written in ``--dir``: ``ca.pem`` and ``ca.key`` (the CA; keep ``ca.key`` offline), and for
each certificate ``<name>.pem`` + ``<name>.key``. Keys are ECDSA P-256, written with mode 0600;
certificates are SHA-256 signed. The common name (CN) is the identity: with
``use_identity_as_username`` Mosquitto takes it as the user name, and the dynamic-security file
of ``deploy/mosquitto/`` (``scripts/mosquitto-dynsec.py`` registers each identity in it) gives
``iot-collector-*`` users the right to read ``iot/#`` and devices the right to publish to
``iot/data``, ``iot/data/<CN>`` and ``iot/status/<CN>`` only. A device's CN must be a valid
device id (``[A-Za-z0-9._:-]``, 1-50 characters).

A production fleet should use a CA whose key lives in an HSM or a managed PKI (AWS IoT Core
registers device certificates itself); this script is for local brokers, demos and tests.
"""

# ruff: noqa: T201 - a command-line tool: it reports with print
from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import re
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "ca"
_DEVICE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,50}$")
_COLLECTOR_PREFIX = "iot-collector"


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_bytes(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(
    directory: Path, *, common_name: str = "iot-collector local CA", days: int = 3650
) -> None:
    """A self-signed CA certificate and key in ``directory`` (``ca.pem``, ``ca.key``)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(directory / f"{CA_NAME}.key", key)
    _write_cert(directory / f"{CA_NAME}.pem", cert)


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = directory / f"{CA_NAME}.pem", directory / f"{CA_NAME}.key"
    if not cert_path.is_file() or not key_path.is_file():
        raise SystemExit(f"make-certs: no CA in {directory}: run the 'ca' command first")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SystemExit(f"make-certs: {key_path} is not an EC key")
    return cert, key


def issue(  # noqa: PLR0913 - keyword-only options of one certificate
    directory: Path,
    common_name: str,
    *,
    server: bool = False,
    sans: tuple[str, ...] = (),
    days: int = 825,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> tuple[Path, Path]:
    """Issue ``<common_name>.pem`` / ``.key`` signed by the CA in ``directory``.

    A server certificate gets the ``serverAuth`` usage and subject alternative names (the CN
    plus ``sans``, each a DNS name or an IP address); a client certificate ``clientAuth``.
    ``not_before`` / ``not_after`` override the validity (the tests issue expired ones).
    """
    ca_cert, ca_key = _load_ca(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    start = not_before or now - dt.timedelta(minutes=5)
    end = not_after or now + dt.timedelta(days=days)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if server:
        names: list[x509.GeneralName] = []
        for value in dict.fromkeys((common_name, *sans)):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(value)))
            except ValueError:
                names.append(x509.DNSName(value))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = directory / f"{common_name}.pem", directory / f"{common_name}.key"
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return cert_path, key_path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="make-certs.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--dir", type=Path, default=Path("certs"), help="output directory")
    commands = parser.add_subparsers(dest="command", required=True)
    ca = commands.add_parser("ca", help="create the CA (refuses to overwrite one)")
    ca.add_argument("--days", type=int, default=3650)
    ca.add_argument("--name", default="iot-collector local CA", help="the CA's common name")
    server = commands.add_parser("server", help="a broker certificate")
    server.add_argument("name", help="the broker's host name (CN and first SAN)")
    server.add_argument("--san", action="append", default=[], help="another DNS name or IP")
    server.add_argument("--days", type=int, default=825)
    collector = commands.add_parser("collector", help="a collector certificate (iot-collector-*)")
    collector.add_argument("name", help="e.g. iot-collector-0")
    collector.add_argument("--days", type=int, default=825)
    device = commands.add_parser("device", help="a device certificate; the CN is its device id")
    device.add_argument("name", help="the device id, e.g. sensor-0042")
    device.add_argument("--days", type=int, default=825)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    directory: Path = args.dir
    if args.command == "ca":
        if (directory / f"{CA_NAME}.key").exists():
            print(f"make-certs: {directory}/{CA_NAME}.key exists; not overwriting", file=sys.stderr)
            return 1
        make_ca(directory, common_name=args.name, days=args.days)
        print(f"CA: {directory / 'ca.pem'} (key {directory / 'ca.key'}: keep it private)")
        return 0
    if args.command == "collector" and not args.name.startswith(_COLLECTOR_PREFIX):
        print(
            f"make-certs: a collector's CN must start with {_COLLECTOR_PREFIX!r}", file=sys.stderr
        )
        return 2
    if args.command == "device" and (
        not _DEVICE_ID.match(args.name) or args.name.startswith(_COLLECTOR_PREFIX)
    ):
        print(
            "make-certs: a device's CN is its device id: 1-50 of [A-Za-z0-9._:-], "
            f"not starting with {_COLLECTOR_PREFIX!r}",
            file=sys.stderr,
        )
        return 2
    cert, key = issue(
        directory,
        args.name,
        server=args.command == "server",
        sans=tuple(getattr(args, "san", ())),
        days=args.days,
    )
    print(f"{args.command}: {cert} (key {key})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
