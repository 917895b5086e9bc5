"""Who is calling and who asked: certificate identities and roles, revocation, signed job specs.

A consortium certificate names its holder and its role in a URI subject alternative name:

- ``smpc://party/NAME``: a compute party. Extended key usage serverAuth and clientAuth; it
  also carries NAME (and its host names) as DNS names, so that a dialing party can pin it.
- ``smpc://client/NAME``: a bank's client (an analyst, an application). clientAuth only and
  no DNS name, so it can neither serve as a party nor call the peer service.

NAME is the identity that policies check (requester, recipient, compute party). A
certificate without exactly one such name, or whose role and key usage disagree, has no
identity here and is refused. The peer service takes party certificates of the configured
compute parties only; the job service takes client certificates and party certificates (a
bank's party acting as that bank's own client), both as the bank NAME.

A submission is signed: the client signs ``spec_payload`` (job id, analysis, parameters,
source, recipients, requester, signing time) with its certificate's key and sends the
signature, its certificate and the time. Every party checks them (``SpecVerifier``) before it
decides, so a coordinator cannot run a job in another member's name.

Job ids are namespaced by requester: ``REQUESTER/ID``, where ID is the client's choice. No
identity can take an id in another's namespace.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from smpc.errors import SmpcError

PARTY, CLIENT = "party", "client"
ROLES = (PARTY, CLIENT)
URI_PREFIX = "smpc://"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
CLIENT_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}/[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
FINGERPRINT = re.compile(r"sha256:[0-9a-f]{64}")
SIGNATURE_WINDOW_S = 300
"""A signed submission is accepted this many seconds before or after its signing time."""
SPEC_CONTEXT = "smpc.v1.JobSpec/1"
MAX_REASON_CHARS = 500


class IdentityError(SmpcError, PermissionError):
    """A certificate or signature that does not establish who is calling or who asked."""


@dataclass(frozen=True)
class CertIdentity:
    name: str
    role: str
    serial: int
    fingerprint: str  # "sha256:HEX" of the DER certificate


def uri_for(role: str, name: str) -> str:
    return f"{URI_PREFIX}{role}/{name}"


def fingerprint_of(cert: x509.Certificate) -> str:
    return "sha256:" + cert.fingerprint(hashes.SHA256()).hex()


def load_certificate(pem: bytes | str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    except ValueError as exc:
        raise IdentityError(f"not a PEM certificate ({exc})") from None


def identity_of(cert: x509.Certificate) -> CertIdentity:
    """The holder's name and role, from its one ``smpc://ROLE/NAME`` URI; IdentityError if it
    has none, several, or a role its key usage does not match."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = [u for u in sans.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith(URI_PREFIX)]
    except x509.ExtensionNotFound:
        uris = []
    if len(uris) != 1:
        raise IdentityError(f"the certificate names {len(uris)} smpc identities (a URI smpc://party/NAME or "
                            "smpc://client/NAME); it needs exactly one (re-issue it with `smpc certs init`)")
    role, _, name = uris[0][len(URI_PREFIX):].partition("/")
    if role not in ROLES or not NAME.fullmatch(name):
        raise IdentityError(f"the certificate's identity {uris[0][:100]!r} is not smpc://party/NAME or "
                            "smpc://client/NAME")
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cn or cn[0].value != name:
        raise IdentityError(f"the certificate's common name does not match its identity {uris[0]!r}")
    try:
        usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        usages = set()
    server, client = ExtendedKeyUsageOID.SERVER_AUTH in usages, ExtendedKeyUsageOID.CLIENT_AUTH in usages
    if not client or (role == PARTY) != server:
        want = "serverAuth and clientAuth" if role == PARTY else "clientAuth only"
        raise IdentityError(f"the certificate of {uris[0]!r} has the wrong extended key usage (a {role} "
                            f"certificate has {want})")
    return CertIdentity(name, role, cert.serial_number, fingerprint_of(cert))


_CACHE_SIZE = 256
_cache: OrderedDict[bytes, CertIdentity | IdentityError] = OrderedDict()
_cache_lock = threading.Lock()


def identity_of_pem(pem: bytes) -> CertIdentity:
    """``identity_of`` a PEM certificate, remembered for the last few certificates (a TLS
    caller presents the same one on every call)."""
    with _cache_lock:
        hit = _cache.get(pem)
        if hit is not None:
            _cache.move_to_end(pem)
    if hit is None:
        try:
            hit = identity_of(load_certificate(pem))
        except IdentityError as exc:
            hit = exc
        with _cache_lock:
            _cache[pem] = hit
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    if isinstance(hit, IdentityError):
        raise IdentityError(str(hit))
    return hit


def normalise_fingerprint(text: str) -> str | None:
    """``sha256:HEX`` in lower case (colons between bytes allowed), or None if it is not one."""
    algo, sep, digest = text.strip().partition(":")
    value = f"{algo.lower()}:{digest.replace(':', '').lower()}" if sep else ""
    return value if FINGERPRINT.fullmatch(value) else None


# ----- revocation -----------------------------------------------------------------------------
class RevocationList:
    """The CA's certificate revocation list (PEM), read again whenever the file changes.

    A list that cannot be read, is not signed by the CA, or was issued by another CA makes
    every check fail (closed): a party that cannot tell who is revoked accepts nobody."""

    def __init__(self, path: str | Path, ca: x509.Certificate):
        self.path = Path(path)
        self.ca = ca
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._revoked: frozenset[int] = frozenset()
        self._problem: str | None = None
        self._load()
        if self._problem:
            raise IdentityError(self._problem)

    def _load(self) -> None:
        try:
            stat = os.stat(self.path)
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except OSError as exc:
            self._stamp, self._problem = None, f"cannot read the revocation list {self.path} ({exc.strerror})"
            return
        if stamp == self._stamp:
            return
        try:
            crl = x509.load_pem_x509_crl(self.path.read_bytes())
            if crl.issuer != self.ca.subject or not crl.is_signature_valid(self.ca.public_key()):
                raise ValueError("it is not signed by the CA")
        except (OSError, ValueError, TypeError) as exc:
            self._stamp, self._problem = stamp, f"the revocation list {self.path} is not usable ({exc})"
            return
        self._revoked = frozenset(entry.serial_number for entry in crl)
        self._stamp, self._problem = stamp, None

    def check(self, ident: CertIdentity) -> None:
        """IdentityError if ``ident``'s certificate is revoked (or the list is unusable)."""
        with self._lock:
            self._load()
            problem, revoked = self._problem, self._revoked
        if problem:
            raise IdentityError(problem)
        if ident.serial in revoked:
            raise IdentityError(f"the certificate of {ident.role} {ident.name!r} (serial {ident.serial:x}) is revoked")


# ----- job ids --------------------------------------------------------------------------------
def namespaced_job_id(requester: str, job_id: str) -> str:
    """``REQUESTER/ID`` for a client's ``ID`` (or an id already in the requester's namespace);
    IdentityError for an id in another namespace or a malformed one."""
    owner, sep, own = job_id.partition("/")
    if sep:
        if owner != requester:
            raise IdentityError(f"job id {job_id[:128]!r} is in {owner[:64]!r}'s namespace, not {requester!r}'s")
        job_id = own
    if not CLIENT_JOB_ID.fullmatch(job_id):
        raise IdentityError(f"job id {job_id[:64]!r} is not 1-128 letters, digits, '.', '_', ':', '-'")
    return f"{requester}/{job_id}"


def recipients_for(requester: str, recipients: Iterable[str]) -> list[str]:
    """The requester first, then the other recipients once each, in their order."""
    return [requester] + [r for r in dict.fromkeys(recipients) if r != requester]


# ----- signed job specs -----------------------------------------------------------------------
def spec_payload(job_id: str, analysis: str, params: Mapping[str, str], source: str, recipients: Sequence[str],
                 requester: str, signed_at: int) -> bytes:
    """The bytes a client signs: canonical JSON of the job as it asked for it."""
    body = {
        "context": SPEC_CONTEXT, "job_id": job_id, "analysis": analysis,
        "params": {str(k): str(v) for k, v in sorted(params.items())}, "source": source,
        "recipients": list(recipients), "requester": requester, "signed_at": int(signed_at),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(key, payload: bytes) -> bytes:
    """Sign with a certificate's private key (ECDSA, RSA or Ed25519)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(payload, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(payload)
    raise SmpcError(f"cannot sign with a {type(key).__name__} key (ECDSA, RSA or Ed25519)")


def load_private_key(pem: bytes):
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SmpcError(f"not an unencrypted PEM private key ({exc})") from None


def _verify(cert: x509.Certificate, signature: bytes, payload: bytes) -> None:
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(key, ed25519.Ed25519PublicKey):
        key.verify(signature, payload)
    else:
        raise InvalidSignature


@dataclass(frozen=True)
class Signer:
    """A verified submission: who signed it, and what identifies the signature."""

    identity: CertIdentity
    signed_at: int
    signature_sha256: str

    def audit(self) -> dict:
        return {"signer": self.identity.name, "signer_role": self.identity.role,
                "signer_cert": self.identity.fingerprint, "signed_at": self.signed_at,
                "signature_sha256": self.signature_sha256}


def issued_certificate(ca: x509.Certificate, crl: RevocationList | None, certificate_pem: str,
                       now: float) -> tuple[x509.Certificate, CertIdentity]:
    """(certificate, its identity) of a signer: issued by the CA, valid at ``now``, not revoked;
    IdentityError saying which check failed."""
    cert = load_certificate(certificate_pem[:65536])
    try:
        if cert.issuer != ca.subject:
            raise ValueError("another issuer")
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise IdentityError("the signing certificate is not issued by the consortium CA") from None
    at = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise IdentityError("the signing certificate is not valid now (expired or not yet valid)")
    ident = identity_of(cert)
    if crl is not None:
        crl.check(ident)
    return cert, ident


class SpecVerifier:
    """Checks a signed submission against the consortium CA (and its revocation list)."""

    def __init__(self, ca: x509.Certificate, crl: RevocationList | None = None,
                 window_s: float = SIGNATURE_WINDOW_S):
        self.ca = ca
        self.crl = crl
        self.window_s = window_s

    def verify(self, certificate_pem: str, signature: bytes, signed_at: int, payload: bytes, requester: str,
               now: float) -> Signer:
        """The signer, or IdentityError saying which check failed."""
        if not signature or not certificate_pem:
            raise IdentityError("the submission is not signed (mutual TLS needs a client that signs its job spec; "
                                "smpc job submit and JobClient do)")
        cert, ident = issued_certificate(self.ca, self.crl, certificate_pem, now)
        if ident.name != requester:
            raise IdentityError(f"the job is signed by {ident.role} {ident.name!r}, not by its requester {requester!r}")
        if abs(now - signed_at) > self.window_s:
            raise IdentityError(f"the signature's time is more than {self.window_s:g} s away from this party's clock")
        try:
            _verify(cert, signature, payload)
        except InvalidSignature:
            raise IdentityError(f"the signature of {ident.name!r} does not match the job spec") from None
        return Signer(ident, int(signed_at), hashlib.sha256(signature).hexdigest())


def verify_party_signature(ca: x509.Certificate, crl: RevocationList | None, certificate_pem: str,
                           signature: bytes, payload: bytes, party: str, now: float) -> CertIdentity:
    """The party certificate of ``party`` (issued by the CA, valid now, not revoked) whose key
    signed ``payload``; IdentityError saying which check failed."""
    cert, ident = issued_certificate(ca, crl, certificate_pem, now)
    return _party_signed(cert, ident, signature, payload, party)


def signed_by_party(certificate_pem: str, signature: bytes, payload: bytes, party: str) -> CertIdentity:
    """The identity of a party certificate whose key signed ``payload``, without asking who
    issued it (for records read back from a log; ``verify_party_signature`` also checks the CA)."""
    cert = load_certificate(certificate_pem[:65536])
    return _party_signed(cert, identity_of(cert), signature, payload, party)


def _party_signed(cert: x509.Certificate, ident: CertIdentity, signature: bytes, payload: bytes,
                  party: str) -> CertIdentity:
    if ident.role != PARTY or ident.name != party:
        raise IdentityError(f"the signature is by {ident.role} {ident.name!r}, not by party {party!r}")
    try:
        _verify(cert, signature, payload)
    except InvalidSignature:
        raise IdentityError(f"the signature of {party!r} does not match what it signs") from None
    return ident


# ----- text from peers --------------------------------------------------------------------------
def sanitise(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """A peer's free text for logs and answers: printable characters only (control characters,
    newlines included, become spaces), at most ``limit`` characters."""
    text = text[: limit * 4]
    clean = "".join(ch if ch.isprintable() and unicodedata.category(ch)[0] != "C" else " " for ch in text)
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"
