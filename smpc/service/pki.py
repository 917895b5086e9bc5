"""A development PKI: one CA, a certificate and key per party and client, and a revocation
list (``smpc certs init``, ``smpc certs revoke``).

For development and tests only: a bank's deployment uses certificates from the consortium's
real CA, made to the same profile. A certificate names its holder and role in a URI subject
alternative name (``smpc://party/NAME`` or ``smpc://client/NAME``, see
``smpc.service.identity``) and carries NAME as its common name. A party's certificate is for
TLS server and client use and also has NAME as a DNS name (so a dialing party can pin it),
plus ``localhost`` and ``127.0.0.1`` for loopback runs; a client's is for client use only and
names no host. Keys are ECDSA P-256, written unencrypted with mode 0600.

Layout of ``init --out OUT``: ``OUT/ca.pem`` (the CA certificate every party and client
trusts), ``OUT/ca.crl`` (an empty revocation list to publish), ``OUT/NAME.pem`` and
``OUT/NAME.key`` per party and client; the CA's key lives apart, in ``--ca-dir`` (default
``OUT/ca/``, mode 0700: ``ca.key`` and ``ca.pem``), which no party's configuration names and
which a real deployment keeps off the party machines.
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
from smpc.service.identity import CLIENT, PARTY, CertIdentity, identity_of, load_certificate, uri_for

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, data: bytes, private: bool = False) -> None:
    """Write a file; a private one is created with mode 0600 and set to 0600 also when it
    existed before with a looser mode (``--force`` over an old PKI)."""
    if private:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
        except BaseException:
            os.close(fd)
            raise
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
    """A key and a certificate for ``identity``. ``server=True``: a party's (``smpc://party/``
    URI, DNS names, TLS server and client use). ``server=False``: a client's
    (``smpc://client/`` URI, client use only and no DNS name), so that a process holding it
    can neither call the peer service nor pass for a party at a loopback address."""
    if not _NAME.fullmatch(identity):
        raise SmpcError(f"{identity!r} is not a valid party name (letters, digits, '_', '.', '-')")
    key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    alt: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri_for(PARTY if server else CLIENT, identity))]
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if server else [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    for host in (identity, *hosts) if server else ():
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
               force: bool = False, ca_dir: str | Path | None = None) -> dict[str, Path]:
    """Write the CA (``ca_dir``, default ``out/ca``: ``ca.key``, ``ca.pem``), ``out/ca.pem``,
    an empty ``out/ca.crl`` and ``NAME.pem``/``NAME.key`` for every party and client into
    ``out``. Refuses to overwrite existing files unless ``force``. Returns the paths."""
    names = list(parties) + list(clients)
    if not parties:
        raise SmpcError("certs init needs at least one party name")
    if len(set(names)) != len(names):
        raise SmpcError(f"names must be unique, got {names}")
    for n in names:
        if not _NAME.fullmatch(n):
            raise SmpcError(f"{n!r} is not a valid party name (letters, digits, '_', '.', '-')")
    out = Path(out)
    ca_dir = Path(ca_dir) if ca_dir is not None else out / "ca"
    targets = [ca_dir / "ca.key", ca_dir / "ca.pem", out / "ca.pem", out / "ca.crl"] + [
        out / f"{n}.{ext}" for n in names for ext in ("pem", "key")]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not force:
        raise SmpcError(f"refusing to overwrite {existing[0]} (use --force to replace the PKI in {out})")
    out.mkdir(parents=True, exist_ok=True)
    ca_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(ca_dir, 0o700)
    ca_key, ca_cert = make_ca(days=days)
    _write(ca_dir / "ca.key", _pem_key(ca_key), private=True)
    _write(ca_dir / "ca.pem", _pem_cert(ca_cert))
    _write(out / "ca.pem", _pem_cert(ca_cert))
    _write(out / "ca.crl", _pem_crl(ca_key, ca_cert, [], days=days))
    paths = {"ca": out / "ca.pem"}
    for n in names:
        key, cert = issue(ca_key, ca_cert, n, days=days, server=n in parties)
        _write(out / f"{n}.key", _pem_key(key), private=True)
        _write(out / f"{n}.pem", _pem_cert(cert))
        paths[n] = out / f"{n}.pem"
    return paths


def load_ca(ca_dir: str | Path):
    """The CA's key and certificate from ``ca_dir`` (``ca.key``, ``ca.pem``)."""
    ca_dir = Path(ca_dir)
    try:
        key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    except FileNotFoundError as exc:
        raise SmpcError(f"no CA in {ca_dir}: {exc.filename} does not exist (smpc certs init writes it)") from None
    except (ValueError, TypeError) as exc:
        raise SmpcError(f"the CA in {ca_dir} is not a PEM key and certificate ({exc})") from None
    return key, cert


def _pem_crl(ca_key, ca_cert: x509.Certificate, revoked: list[tuple[int, dt.datetime]], days: int = 30) -> bytes:
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=days))
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build())
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def revoke(ca_dir: str | Path, crl: str | Path, cert: str | Path | None = None, serial: int | None = None,
           days: int = 30) -> tuple[int, int]:
    """Add a certificate (its file, or its serial number) to the revocation list at ``crl``
    (created if missing; its entries are kept), signed by the CA in ``ca_dir``. Returns
    (the serial revoked, the number of entries)."""
    ca_key, ca_cert = load_ca(ca_dir)
    if (cert is None) == (serial is None):
        raise SmpcError("name the certificate to revoke: its file or its serial number (one of the two)")
    if cert is not None:
        try:
            target = load_certificate(Path(cert).read_bytes())
        except SmpcError as exc:
            raise SmpcError(f"{cert}: {exc}") from None
        if target.issuer != ca_cert.subject:
            raise SmpcError(f"{cert} was not issued by the CA in {ca_dir}")
        serial = target.serial_number
    crl = Path(crl)
    entries: dict[int, dt.datetime] = {}
    if crl.exists():
        try:
            current = x509.load_pem_x509_crl(crl.read_bytes())
        except ValueError as exc:
            raise SmpcError(f"{crl} is not a PEM revocation list ({exc})") from None
        if current.issuer != ca_cert.subject or not current.is_signature_valid(ca_cert.public_key()):
            raise SmpcError(f"{crl} is not signed by the CA in {ca_dir}")
        entries = {e.serial_number: e.revocation_date_utc for e in current}
    entries.setdefault(int(serial), dt.datetime.now(dt.timezone.utc))
    crl.parent.mkdir(parents=True, exist_ok=True)
    tmp = crl.with_name(crl.name + ".tmp")
    tmp.write_bytes(_pem_crl(ca_key, ca_cert, sorted(entries.items()), days=days))
    os.replace(tmp, crl)  # a party re-reading it never sees half a list
    return int(serial), len(entries)


def describe(cert: str | Path) -> CertIdentity:
    """A certificate file's identity, role, serial and ``sha256:HEX`` fingerprint (the value
    of ``[peers.NAME] fingerprint``)."""
    try:
        return identity_of(load_certificate(Path(cert).read_bytes()))
    except SmpcError as exc:
        raise SmpcError(f"{cert}: {exc}") from None
