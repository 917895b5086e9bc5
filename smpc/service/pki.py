"""A development PKI: one CA and a certificate and key per party (``smpc certs init``).

For development and tests only: a bank's deployment uses certificates from the consortium's
real CA. Every certificate's identity is its subject common name, which is also a DNS subject
alternative name (so a dialing party can pin it), plus ``localhost`` and ``127.0.0.1`` for
loopback runs. Keys are ECDSA P-256, written unencrypted with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from smpc.errors import SmpcError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, data: bytes, private: bool = False) -> None:
    if private:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_ca(common_name: str = "smpc development CA", days: int = 365):
    key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(ca_key, ca_cert: x509.Certificate, identity: str, days: int = 365,
          hosts: tuple[str, ...] = ("localhost", "127.0.0.1"), server: bool = True):
    """A key and a certificate for ``identity`` (CN and DNS SAN), valid as TLS server and
    client. ``server=False`` (an analyst's client certificate): client use only and no host
    names, so that a process holding it cannot pass for a party at a loopback address to a
    ``smpc job`` client that does not pin the party's name."""
    if not _NAME.fullmatch(identity):
        raise SmpcError(f"{identity!r} is not a valid party name (letters, digits, '_', '.', '-')")
    key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    alt: list[x509.GeneralName] = [x509.DNSName(identity)]
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if server else [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    for host in hosts if server else ():
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(usages),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def init_certs(parties: list[str], out: str | Path, clients: list[str] = (), days: int = 365,
               force: bool = False) -> dict[str, Path]:
    """Write ``ca.pem``/``ca.key`` and ``NAME.pem``/``NAME.key`` for every party and client
    into ``out``. Refuses to overwrite existing files unless ``force``. Returns the paths."""
    names = list(parties) + list(clients)
    if not parties:
        raise SmpcError("certs init needs at least one party name")
    if len(set(names)) != len(names):
        raise SmpcError(f"names must be unique, got {names}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    targets = [out / "ca.pem", out / "ca.key"] + [out / f"{n}.{ext}" for n in names for ext in ("pem", "key")]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not force:
        raise SmpcError(f"refusing to overwrite {existing[0]} (use --force to replace the PKI in {out})")
    for n in names:
        if not _NAME.fullmatch(n):
            raise SmpcError(f"{n!r} is not a valid party name (letters, digits, '_', '.', '-')")
    ca_key, ca_cert = make_ca(days=days)
    _write(out / "ca.key", _pem_key(ca_key), private=True)
    _write(out / "ca.pem", _pem_cert(ca_cert))
    paths = {"ca": out / "ca.pem"}
    for n in names:
        key, cert = issue(ca_key, ca_cert, n, days=days, server=n in parties)
        _write(out / f"{n}.key", _pem_key(key), private=True)
        _write(out / f"{n}.pem", _pem_cert(cert))
        paths[n] = out / f"{n}.pem"
    return paths
