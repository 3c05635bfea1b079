"""The files of a secure deployment and the checks they must pass before Flower starts.

A key directory (made by ``crlsc-fl keys DIR --nodes N``, :mod:`~crlsc_fl.security.keys`) holds::

    ca.crt            the CA certificate: public; every SuperNode host and the ``flwr`` CLI need it
    ca.key            the CA private key: only to issue more certificates; keep it offline
    server.crt        the SuperLink certificate, issued by the CA, SANs = the addresses nodes dial
    server.key        the SuperLink private key: only on the SuperLink host
    node-<i>.key      SuperNode i's private key (OpenSSH, EC P-384): only on device i's host
    node-<i>.pub      its public key: registered at the SuperLink (``flwr supernode register``)

Flower 1.42 checks these files only when its processes start, with terse messages
("Unable to parse the private key file."), and a SuperNode with a wrong key retries
forever. :func:`load_credentials` checks everything a deployment of N SuperNodes uses
(readable, parseable, the server key is that of the certificate, the certificate is the
CA's, valid now, names the address the nodes dial, private keys closed to other users,
node keys unique and matching their public halves) and raises :class:`CredentialError`
naming the file and what is wrong, before anything starts.
"""

from __future__ import annotations

import datetime
import ipaddress
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
SERVER_CERT = "server.crt"
SERVER_KEY = "server.key"
# Flower accepts SuperNode keys on the NIST curves only (flwr.supercore.primitives.asymmetric)
NIST_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
LOOPBACK = "127.0.0.1"


class CredentialError(ValueError):
    """A certificate or key is missing, unreadable, malformed or does not fit; the message names the file."""


def node_key_name(index: int) -> str:
    """File name of SuperNode ``index``'s private key."""
    return f"node-{index}.key"


def node_pub_name(index: int) -> str:
    """File name of SuperNode ``index``'s public key."""
    return f"node-{index}.pub"


def make_hint(directory: Path) -> str:
    return f"make them with `crlsc-fl keys {directory} --nodes N`"


def read_bytes(path: Path, what: str) -> bytes:
    """The file's bytes, or a :class:`CredentialError` saying it is missing or unreadable."""
    if not path.exists():
        raise CredentialError(f"{what} {path}: no such file ({make_hint(path.parent)})")
    if not path.is_file():
        raise CredentialError(f"{what} {path}: not a regular file")
    try:
        return path.read_bytes()
    except OSError as err:
        raise CredentialError(f"{what} {path}: cannot read it ({err.strerror})") from None


def check_private(path: Path, what: str) -> None:
    """A private key must not be open to other users (like ssh's 'UNPROTECTED PRIVATE KEY FILE')."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise CredentialError(f"{what} {path}: readable or writable by other users (mode {mode:04o}); run chmod 600 {path}")


def load_certificate(path: Path, what: str) -> x509.Certificate:
    """A PEM certificate, valid now."""
    data = read_bytes(path, what)
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise CredentialError(f"{what} {path}: not a PEM X.509 certificate") from None
    now = datetime.datetime.now(datetime.UTC)
    if now < cert.not_valid_before_utc:
        raise CredentialError(f"{what} {path}: not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (check the clock)")
    if now > cert.not_valid_after_utc:
        raise CredentialError(f"{what} {path}: expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; make new keys")
    return cert


def _read_private_key(path: Path, what: str, load: Callable[..., Any], format_name: str) -> Any:
    """The checks every private key gets: readable, owner-only, unencrypted, parseable."""
    data = read_bytes(path, what)
    check_private(path, what)
    try:
        return load(data, password=None)
    except TypeError:
        raise CredentialError(f"{what} {path}: encrypted with a passphrase; Flower needs it unencrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise CredentialError(f"{what} {path}: not {format_name} private key") from None


def load_pem_private_key(path: Path, what: str) -> ec.EllipticCurvePrivateKey:
    """An unencrypted PEM EC private key that only its owner can read."""
    key = _read_private_key(path, what, serialization.load_pem_private_key, "a PEM")
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CredentialError(f"{what} {path}: a {type(key).__name__}, expected an elliptic-curve key")
    return key


def load_ssh_private_key(path: Path, what: str) -> ec.EllipticCurvePrivateKey:
    """An unencrypted OpenSSH EC private key on a NIST curve (what ``flower-supernode`` loads)."""
    key = _read_private_key(path, what, serialization.load_ssh_private_key, "an OpenSSH")
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, NIST_CURVES):
        raise CredentialError(f"{what} {path}: must be an ECDSA key on a NIST curve (P-256/384/521), "
                              f"like `ssh-keygen -t ecdsa -b 384`")
    return key


def load_ssh_public_key(path: Path, what: str) -> ec.EllipticCurvePublicKey:
    """An OpenSSH EC public key on a NIST curve (what ``flwr supernode register`` loads)."""
    data = read_bytes(path, what)
    try:
        key = serialization.load_ssh_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise CredentialError(f"{what} {path}: not an OpenSSH public key line") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, NIST_CURVES):
        raise CredentialError(f"{what} {path}: must be an ECDSA key on a NIST curve (P-256/384/521)")
    return key


def public_der(key: ec.EllipticCurvePublicKey) -> bytes:
    """A public key's canonical bytes, to compare keys."""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def san_names(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses a certificate is valid for."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))]


def covers(cert: x509.Certificate, host: str) -> bool:
    """True if ``host`` (an IP address or a DNS name) is among the certificate's SANs."""
    try:
        return str(ipaddress.ip_address(host)) in san_names(cert)
    except ValueError:
        return host.lower() in (name.lower() for name in san_names(cert))


def is_ca(cert: x509.Certificate) -> bool:
    """True if the certificate may sign others (basicConstraints CA:TRUE)."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def check_issued_by(cert: x509.Certificate, ca: x509.Certificate, path: Path, ca_path: Path) -> None:
    """``cert`` must carry the CA's signature (TLS clients holding only ``ca.crt`` trust nothing else)."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise CredentialError(f"server certificate {path}: not issued by the CA {ca_path} (keys from two different "
                              f"`crlsc-fl keys` runs?)") from None


@dataclass(frozen=True)
class NodeKey:
    """One SuperNode's key pair: the private half for ``flower-supernode``, the public half to register."""

    index: int
    private_key: Path
    public_key: Path


@dataclass(frozen=True)
class Credentials:
    """The checked files of a TLS deployment with SuperNode authentication."""

    directory: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path
    nodes: tuple[NodeKey, ...]
    hosts: tuple[str, ...]  # the server certificate's SANs

    def superlink_args(self, supernode_auth: bool = True) -> list[str]:
        """``flower-superlink`` options: TLS on its one port (Fleet, Control, Runtime APIs), registered nodes only."""
        args = ["--ssl-ca-certfile", str(self.ca_cert), "--ssl-certfile", str(self.server_cert),
                "--ssl-keyfile", str(self.server_key)]
        return args + (["--enable-supernode-auth"] if supernode_auth else [])

    def supernode_args(self, index: int) -> list[str]:
        """``flower-supernode`` options of SuperNode ``index``: trust only our CA, sign with its own key."""
        return ["--root-certificates", str(self.ca_cert), "--auth-supernode-private-key", str(self.nodes[index].private_key)]


def check_node(directory: Path, index: int) -> tuple[NodeKey, bytes]:
    """SuperNode ``index``'s key pair: both halves load and belong together; returns it and its public bytes."""
    node = NodeKey(index, directory / node_key_name(index), directory / node_pub_name(index))
    private = load_ssh_private_key(node.private_key, f"SuperNode {index} private key")
    public = load_ssh_public_key(node.public_key, f"SuperNode {index} public key")
    if public_der(private.public_key()) != public_der(public):
        raise CredentialError(f"SuperNode {index} public key {node.public_key}: not the public half of {node.private_key}")
    return node, public_der(public)


def load_credentials(directory: Path, nodes: int, dial: Sequence[str] = (LOOPBACK,)) -> Credentials:
    """Check the key directory for a deployment of ``nodes`` SuperNodes that dial the SuperLink at ``dial``.

    Raises :class:`CredentialError` (a ``ValueError``: the launchers exit 2) at the first problem.
    """
    directory = directory.expanduser().resolve()
    if not directory.is_dir():
        raise CredentialError(f"key directory {directory}: no such directory ({make_hint(directory)})")
    ca_path, cert_path, key_path = directory / CA_CERT, directory / SERVER_CERT, directory / SERVER_KEY
    ca = load_certificate(ca_path, "CA certificate")
    if not is_ca(ca):
        raise CredentialError(f"CA certificate {ca_path}: not a CA certificate (basicConstraints CA:TRUE missing)")
    cert = load_certificate(cert_path, "server certificate")
    check_issued_by(cert, ca, cert_path, ca_path)
    key = load_pem_private_key(key_path, "server private key")
    if public_der(key.public_key()) != public_der(cert.public_key()):  # type: ignore[arg-type]
        raise CredentialError(f"server private key {key_path}: not the key of the server certificate {cert_path}")
    for host in dial:
        if not covers(cert, host):
            raise CredentialError(f"server certificate {cert_path}: not valid for {host} (it names {', '.join(san_names(cert))}); "
                                  f"remove server.crt and server.key and run `crlsc-fl keys {directory} --host {host} ...` again")
    checked: list[NodeKey] = []
    seen: dict[bytes, int] = {}
    for index in range(nodes):
        node, public = check_node(directory, index)
        if public in seen:
            raise CredentialError(f"SuperNode {index} public key {node.public_key}: the same key as SuperNode {seen[public]}'s; "
                                  "every SuperNode needs its own key")
        seen[public] = index
        checked.append(node)
    return Credentials(directory, ca_path, cert_path, key_path, tuple(checked), tuple(san_names(cert)))



@dataclass(frozen=True)
class Security:
    """How a deployment's processes talk: TLS with SuperNode authentication (the default), or plaintext.

    ``keys`` are the user's checked credentials (``--keys DIR``); None with ``insecure`` False
    means a fresh set made for this run in its Flower home.
    """

    insecure: bool = False
    keys: Credentials | None = None

    def __post_init__(self) -> None:
        if self.insecure and self.keys is not None:
            raise ValueError("--insecure and --keys exclude each other: plaintext uses no keys")

    def describe(self) -> str:
        """One line for the console."""
        if self.insecure:
            return ("WARNING: --insecure: plaintext HTTP, no TLS, no SuperNode authentication; anyone who can reach "
                    "the port can join or read the traffic (loopback experiments only)")
        where = f"keys in {self.keys.directory}" if self.keys else "fresh keys for this run"
        return f"TLS (own CA) and SuperNode authentication (registered node keys only), {where}"
