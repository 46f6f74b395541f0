"""C2PA Content Credentials through ``c2pa-python``: sign, read back, and a local test certificate chain.

Signing needs a certificate chain (end-entity first, then intermediates, no root) and its private key, as
PEM. ``make_dev_cert`` writes a local test root CA, an intermediate CA and an end-entity certificate with
the emailProtection and documentSigning extended key usages, so signing works offline. Validators do not
trust that root: they report the signature as untrusted unless told to trust ``ca.pem`` (as the tests do).
"""

from __future__ import annotations

import datetime as dt
import importlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .xmp import AI_SOURCE_TYPES

CREATED = "c2pa.created"
OPENED = "c2pa.opened"
EDITED = "c2pa.edited"
PARENT_LABEL = "parent"


class C2paUnavailable(RuntimeError):
    """c2pa-python is not installed or its native library does not load."""


def _lib():
    try:
        return importlib.import_module("c2pa")
    except Exception as exc:  # ImportError, or OSError from the native library
        raise C2paUnavailable(
            f"C2PA needs the 'c2pa-python' package ({exc}); install it with: pip install c2pa-python") from None


def available() -> bool:
    try:
        _lib()
        return True
    except C2paUnavailable:
        return False


def manifest_definition(source_type: str, *, title: str, params: dict[str, Any] | None = None,
                        generator: str = "pixelmill", version: str = "", edit: bool = False,
                        parent: bool = False) -> dict[str, Any]:
    """A new image: one ``c2pa.created`` action. An edit (``edit``): ``c2pa.edited``, preceded, when the
    parent image is at hand (``parent``), by ``c2pa.opened`` pointing at the parent ingredient that
    ``sign_file`` adds. The action that made the pixels carries the digital source type."""
    agent = {"name": generator, "version": version} if version else {"name": generator}
    action: dict[str, Any] = {"action": EDITED if edit else CREATED, "digitalSourceType": source_type,
                              "softwareAgent": agent}
    if params:
        action["parameters"] = {k: str(v) for k, v in params.items() if v is not None and v != ""}
    actions = [action]
    if edit and parent:
        actions.insert(0, {"action": OPENED, "parameters": {"ingredientIds": [PARENT_LABEL]}})
    return {
        "claim_generator_info": [{"name": generator, **({"version": version} if version else {})}],
        "title": title,
        "assertions": [{"label": "c2pa.actions", "data": {"actions": actions}}],
    }


def sign_file(src: Path, dst: Path, mime: str, *, cert_chain_pem: bytes, key_pem: bytes,
              manifest: dict[str, Any], alg: str = "es256", tsa_url: str | None = None,
              parent: tuple[Path, str] | None = None) -> None:
    """Embed a signed manifest: read ``src``, write ``dst`` (must differ). ``parent`` (path, mime): the image
    this one was edited from, added as the ``parentOf`` ingredient the ``c2pa.opened`` action points at
    (its own manifest, if any, is carried along). ``tsa_url``: a timestamp authority (needs network)."""
    c2pa = _lib()
    info = c2pa.C2paSignerInfo(alg.lower().encode(), cert_chain_pem, key_pem, tsa_url.encode() if tsa_url else None)
    signer = c2pa.Signer.from_info(info)
    try:
        builder = c2pa.Builder(json.dumps(manifest))
        if parent is not None:
            with open(parent[0], "rb") as fh:
                builder.add_ingredient({"title": Path(parent[0]).name, "relationship": "parentOf",
                                        "label": PARENT_LABEL}, parent[1], fh)
        with open(src, "rb") as source, open(dst, "w+b") as dest:
            builder.sign(signer, mime, source, dest)
    finally:
        signer.close()


@dataclass
class C2paReport:
    present: bool
    source_type: str | None = None
    actions: list[str] | None = None
    validation_state: str | None = None  # Invalid / Valid / Trusted
    validation_codes: list[str] | None = None
    claim_generator: str | None = None
    title: str | None = None
    ingredients: list[dict[str, Any]] | None = None
    error: str | None = None

    @property
    def says_ai(self) -> bool:
        return bool(self.present and self.source_type in AI_SOURCE_TYPES and self.validation_state != "Invalid")

    def as_dict(self) -> dict[str, Any]:
        return {"present": self.present, "source_type": self.source_type, "actions": self.actions,
                "validation_state": self.validation_state, "validation_codes": self.validation_codes,
                "claim_generator": self.claim_generator, "title": self.title, "ingredients": self.ingredients,
                "error": self.error}


def read(path: Path, mime: str, *, trust_anchors_pem: bytes | None = None) -> C2paReport:
    """Read and validate the C2PA manifest of a file (``trust_anchors_pem``: extra root CAs to trust)."""
    try:
        c2pa = _lib()
    except C2paUnavailable as exc:
        return C2paReport(present=False, error=str(exc))
    data = Path(path).read_bytes()
    context = None
    try:
        if trust_anchors_pem:
            settings = c2pa.Settings.from_dict({
                "trust": {"trust_anchors": trust_anchors_pem.decode()},
                "verify": {"verify_trust": True},
            })
            context = c2pa.Context(settings)
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data), context=context)
        if reader is None:
            return C2paReport(present=False)
        with reader:
            manifest = reader.get_active_manifest() or {}
            state = reader.get_validation_state()
            store = json.loads(reader.json())
    except Exception as exc:  # c2pa.C2paError and friends: report, never crash an inspection
        return C2paReport(present=False, error=f"{type(exc).__name__}: {exc}")
    actions, source_type = [], None
    for assertion in manifest.get("assertions", []):
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            for action in assertion.get("data", {}).get("actions", []):
                actions.append(action.get("action"))
                if action.get("action") in (CREATED, EDITED) and action.get("digitalSourceType"):
                    source_type = action["digitalSourceType"]
    codes = []
    results = store.get("validation_results") or {}
    active = results.get("activeManifest") or {}
    for bucket in ("success", "informational", "failure"):
        codes += [f"{bucket}:{item.get('code')}" for item in active.get(bucket, [])]
    for item in store.get("validation_status") or []:
        code = f"status:{item.get('code')}"
        if code not in codes:
            codes.append(code)
    gen = manifest.get("claim_generator_info") or []
    return C2paReport(present=True, source_type=source_type, actions=actions, validation_state=state,
                      validation_codes=codes, claim_generator=(gen[0].get("name") if gen else
                                                               manifest.get("claim_generator")),
                      title=manifest.get("title"),
                      ingredients=[{"title": i.get("title"), "relationship": i.get("relationship"),
                                    "format": i.get("format")} for i in manifest.get("ingredients") or []])


# ---- local test certificates -------------------------------------------------------------------------------

def make_dev_cert(directory: Path, *, common_name: str = "pixelmill local test signer",
                  days: int = 365) -> dict[str, Path]:
    """Write ca.pem (root, for trust lists), chain.pem (end-entity + intermediate) and signer.key (PKCS#8).

    The root signs an intermediate CA which signs the end-entity certificate (P-256 keys, ES256). The
    end-entity certificate carries the emailProtection and documentSigning EKUs that C2PA accepts.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=days)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pixelmill (local test only)")])

    def cert(subject, issuer, pub, signing_key, *, ca: bool, path_len=None, eku=None, issuer_pub=None):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(pub)
             .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
             .add_extension(x509.BasicConstraints(ca=ca, path_length=path_len), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False,
                                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                                          key_cert_sign=ca, crl_sign=ca, encipher_only=False,
                                          decipher_only=False), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_pub or pub),
                            critical=False))
        if eku:
            b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        return b.sign(signing_key, hashes.SHA256())

    root_key = ec.generate_private_key(ec.SECP256R1())
    inter_key = ec.generate_private_key(ec.SECP256R1())
    ee_key = ec.generate_private_key(ec.SECP256R1())
    root = cert(name("pixelmill local test root CA"), name("pixelmill local test root CA"),
                root_key.public_key(), root_key, ca=True, path_len=1)
    inter = cert(name("pixelmill local test intermediate CA"), root.subject, inter_key.public_key(), root_key,
                 ca=True, path_len=0, issuer_pub=root_key.public_key())
    document_signing = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
    ee = cert(name(common_name), inter.subject, ee_key.public_key(), inter_key, ca=False,
              eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION, document_signing], issuer_pub=inter_key.public_key())
    pem = serialization.Encoding.PEM
    paths = {"ca": directory / "ca.pem", "chain": directory / "chain.pem", "key": directory / "signer.key"}
    paths["ca"].write_bytes(root.public_bytes(pem))
    paths["chain"].write_bytes(ee.public_bytes(pem) + inter.public_bytes(pem))
    paths["key"].write_bytes(ee_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    paths["key"].chmod(0o600)
    return paths
