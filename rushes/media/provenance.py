"""C2PA provenance of media files, read on ingest and written on generated outputs: the one owner of ``c2pa``.

Usage::

    facts = read_c2pa("in.mp4")   # {"c2pa_present": bool, "c2pa_claim_generator", "c2pa_source_type", "c2pa_valid"}
    signer = Credentials.load(key, cert) or Credentials.user_default()   # the latter says it is self-signed
    sign_mp4("raw.mp4", "out.mp4", signer, {"model": ..., "run": ...})   # trainedAlgorithmicMedia manifest

``c2pa-python`` (MIT OR Apache-2.0) wraps the Content Authenticity Initiative's Rust SDK. Reading never
fetches anything (no remote manifests, no OCSP: the SDK's ``verify.remote_manifest_fetch`` and
``verify.ocsp_fetch`` are off); a manifest validates when its claim signature and hash bindings check out
(``validation_state`` Valid or Trusted; a certificate outside the SDK's trust list is "untrusted", which is
still Valid). The digital source type is the IPTC term of the active manifest's ``c2pa.created`` (or first)
action, shortened to its last path segment, e.g. ``trainedAlgorithmicMedia``.

Signing needs a private key and its certificate chain (PEM, leaf first). Without them, a per-user CA and
signing certificate are generated once under ``$RUSHES_C2PA_DIR`` (default ``~/.config/rushes/c2pa``): the
manifest then validates but names a signer nobody else trusts; :meth:`Credentials.user_default` says so.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path

AI_SOURCE_TYPES = ("trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia")
IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
COLUMNS = ("c2pa_present", "c2pa_claim_generator", "c2pa_source_type", "c2pa_valid")
_OFFLINE = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}


class ProvenanceUnavailable(RuntimeError):
    """c2pa-python is not installed."""


def _c2pa():
    try:
        import c2pa
    except ImportError as exc:
        raise ProvenanceUnavailable("C2PA provenance needs c2pa-python: pip install 'rushes[guard]' (or pip "
                                    "install c2pa-python)") from exc
    return c2pa


def available() -> bool:
    try:
        _c2pa()
    except ProvenanceUnavailable:
        return False
    return True


def _context(c2pa):
    return c2pa.Context.from_dict(_OFFLINE) if hasattr(c2pa, "Context") else None


def read_c2pa(path: str | os.PathLike) -> dict:
    """The C2PA facts of the file at ``path`` (all None but ``c2pa_present`` False when it has no manifest).

    A damaged or unreadable manifest is reported as present and not valid, never raised."""
    c2pa = _c2pa()
    facts = dict.fromkeys(COLUMNS)
    facts["c2pa_present"] = False
    try:
        reader = c2pa.Reader(str(path), context=_context(c2pa))
    except c2pa.C2paError as exc:
        if "ManifestNotFound" in type(exc).__name__ or "ManifestNotFound" in str(exc) or "NotSupported" in str(exc):
            return facts
        return {**facts, "c2pa_present": True, "c2pa_valid": False}
    with reader:
        try:
            store = json.loads(reader.json())
            state = reader.get_validation_state()
        except (c2pa.C2paError, ValueError):
            return {**facts, "c2pa_present": True, "c2pa_valid": False}
    return {"c2pa_present": True, "c2pa_valid": state in ("Valid", "Trusted"), **_active_facts(store)}


def _active_facts(store: dict) -> dict:
    """Claim generator and digital source type of the active manifest of a manifest-store JSON."""
    manifest = store.get("manifests", {}).get(store.get("active_manifest") or "", {})
    info = manifest.get("claim_generator_info") or []
    generator = manifest.get("claim_generator") or ", ".join(
        f"{i.get('name', '')} {i.get('version', '')}".strip() for i in info if isinstance(i, dict)) or None
    source = None
    for assertion in manifest.get("assertions") or []:
        if not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        actions = (assertion.get("data") or {}).get("actions") or []
        types = [a.get("digitalSourceType") for a in actions if isinstance(a, dict) and a.get("digitalSourceType")]
        created = [a.get("digitalSourceType") for a in actions
                   if isinstance(a, dict) and a.get("action") == "c2pa.created" and a.get("digitalSourceType")]
        source = source or (created or types or [None])[0]
    return {"c2pa_claim_generator": generator,
            "c2pa_source_type": source.rstrip("/").rsplit("/", 1)[-1] if source else None}


@dataclass(frozen=True)
class Credentials:
    """A signing key and its certificate chain, PEM text (leaf first)."""

    key_pem: str
    cert_pem: str
    self_signed: bool = False

    @classmethod
    def load(cls, key_path, cert_path) -> Credentials:
        try:
            return cls(Path(key_path).read_text(), Path(cert_path).read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read the C2PA key/certificate ({key_path}, {cert_path}): {exc}; give PEM files "
                             f"(--c2pa-key, --c2pa-cert)") from exc

    @classmethod
    def user_default(cls, folder: str | os.PathLike | None = None) -> Credentials:
        """The per-user self-signed credentials, generated on first use (key file mode 0600)."""
        folder = Path(folder or os.environ.get("RUSHES_C2PA_DIR") or Path.home() / ".config" / "rushes" / "c2pa")
        key, cert = folder / "signer.key.pem", folder / "signer.chain.pem"
        if not (key.is_file() and cert.is_file()):
            folder.mkdir(parents=True, exist_ok=True)
            key_pem, cert_pem = generate_chain("rushes user CA", "rushes sample signer")
            _write_private(key, key_pem)
            tmp = cert.with_name(f".{cert.name}.tmp")
            tmp.write_text(cert_pem)
            os.replace(tmp, cert)
        return cls(key.read_text(), cert.read_text(), self_signed=True)


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def generate_chain(ca_name: str, leaf_name: str, days: int = 3650) -> tuple[str, str]:
    """(private key PEM, chain PEM: leaf then CA) of a new EC P-256 CA and a signing certificate it issued,
    with the extensions the C2PA certificate profile asks for (leaf: digitalSignature, emailProtection EKU)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                                                                                            "rushes")])

    now = datetime.datetime.now(datetime.timezone.utc)
    usage = dict(content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False,
                 encipher_only=False, decipher_only=False)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def builder(subject, issuer, public):
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=days))
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))

    ca = (builder(name(ca_name), name(ca_name), ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, **usage), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (builder(name(leaf_name), ca.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **usage),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return key_pem, (leaf.public_bytes(pem) + ca.public_bytes(pem)).decode()


def sign_mp4(src, dst, creds: Credentials, parameters: dict, title: str | None = None,
             source_type: str = "trainedAlgorithmicMedia", version: str | None = None) -> None:
    """Write ``src`` (an MP4) to ``dst`` with a C2PA manifest: a ``c2pa.created`` action of ``source_type``
    by rushes (claim generator version ``version``), with ``parameters`` (e.g. the model and run that made it).
    Raises ValueError naming a bad key."""
    c2pa = _c2pa()
    manifest = {
        "claim_generator_info": [{"name": "rushes", "version": version or "0"}],
        "title": title or Path(dst).name,
        "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": [{
            "action": "c2pa.created", "digitalSourceType": IPTC + source_type,
            "softwareAgent": {"name": "rushes sample"}, "parameters": parameters}]}}],
    }
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, creds.cert_pem.encode(),
                                                           creds.key_pem.encode(), None))
    except c2pa.C2paError as exc:
        raise ValueError(f"the C2PA key/certificate cannot sign: {exc}; give an EC P-256 key (PEM) and its "
                         f"certificate chain, leaf first") from exc
    with signer, c2pa.Builder(manifest) as builder:
        builder.sign_file(str(src), str(dst), signer)
