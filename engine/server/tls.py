"""A studio engine's own TLS certificate: ``enhancelayer serve --init-tls``.

A studio rarely has a certificate authority for one GPU box, and a plain-HTTP engine on the LAN
would show every token and image to the network. So the engine makes a self-signed certificate
once (an EC P-256 key, the names and addresses clients use as subject alternative names, valid
825 days) in its config folder, reuses it on every start (a new one would break every pinned
client), and prints its SHA-256 fingerprint. The plug-ins pin that fingerprint instead of
trusting a CA (plugin/client/client.py): a different certificate is refused in plain words.
"""
from __future__ import annotations

import datetime
import hashlib
import ipaddress
import socket
import ssl
from pathlib import Path

from engine.errors import EnhanceError

VALID_DAYS = 825          # the longest lifetime clients commonly accept for a server certificate


def cert_paths(cfg: Path) -> tuple[Path, Path]:
    d = Path(cfg) / "tls"
    return d / "engine.crt", d / "engine.key"


def fingerprint_of_der(der: bytes) -> str:
    """``SHA256:AB:CD:...`` (the form ``openssl x509 -fingerprint -sha256`` prints)."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return "SHA256:" + ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def fingerprint_of_file(cert: Path) -> str:
    """The fingerprint of the first certificate of a PEM file."""
    try:
        pem = Path(cert).read_text(encoding="ascii")
        der = ssl.PEM_cert_to_DER_cert(pem[pem.index("-----BEGIN CERTIFICATE-----"):
                                           pem.index("-----END CERTIFICATE-----") + 25])
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise EnhanceError(f"cannot read the certificate {cert}: {e}") from None
    return fingerprint_of_der(der)


def names_for(host: str) -> list[str]:
    """The names and addresses a client may use for this engine: the listening address (when it
    is one), this machine's name and its addresses, and loopback."""
    names = [socket.gethostname(), "localhost", "127.0.0.1", "::1"]
    try:
        names += [str(a[4][0]) for a in socket.getaddrinfo(socket.gethostname(), None)]
    except OSError:
        pass
    if host not in ("0.0.0.0", "::", ""):
        names.insert(0, host)
    out: list[str] = []
    for n in names:
        if n and n not in out:
            out.append(n)
    return out


def init_tls(cfg: Path, host: str) -> tuple[Path, Path, bool]:
    """The engine's certificate and key in ``cfg``: made once, reused after. Returns
    (cert, key, made_now)."""
    from engine.server.tokens import private_dir, write_private

    cert, key = cert_paths(cfg)
    if cert.exists() and key.exists():
        return cert, key, False
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        raise EnhanceError("--init-tls needs the 'cryptography' package: .venv/bin/pip install cryptography") \
            from None
    names = names_for(host)
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    k = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"EnhanceLayer engine on {names[0]}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    crt = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(k.public_key())
           .serial_number(x509.random_serial_number())
           .not_valid_before(now - datetime.timedelta(minutes=5))
           .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
           .add_extension(x509.SubjectAlternativeName(sans), critical=False)
           .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
           .sign(k, hashes.SHA256()))
    private_dir(cert.parent)
    write_private(key, k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode("ascii"))
    write_private(cert, crt.public_bytes(serialization.Encoding.PEM).decode("ascii"))
    return cert, key, True
