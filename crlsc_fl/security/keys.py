"""Make the certificates and keys of a secure deployment (= ``crlsc-fl keys``).

    crlsc-fl keys DIR --nodes N [--host HOST ...] [--days D]

writes into DIR (see :mod:`~crlsc_fl.security.credentials` for what each file is for):
a CA (``ca.crt``, ``ca.key``), the SuperLink's certificate and key (``server.crt``,
``server.key``) valid for 127.0.0.1, ::1, localhost and every ``--host``, and one OpenSSH
EC P-384 key pair per SuperNode (``node-<i>.key``, ``node-<i>.pub``), the format
``flower-supernode --auth-supernode-private-key`` and ``flwr supernode register`` read.
All keys are EC P-384 (what Flower's SuperNode authentication uses; fast to make).
Private keys are created with mode 0600 (never readable by others, not even for a moment);
DIR is made with mode 0700.

Files that exist are kept, so the same command with a larger ``--nodes`` adds keys for new
devices without invalidating the registered ones; to reissue the server certificate for
other hosts, remove ``server.crt`` and ``server.key`` first. Everything is checked with
:func:`~crlsc_fl.security.credentials.load_credentials` at the end.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from crlsc_fl.security.credentials import (
    CA_CERT,
    CA_KEY,
    LOOPBACK,
    SERVER_CERT,
    SERVER_KEY,
    CredentialError,
    Credentials,
    covers,
    load_certificate,
    load_credentials,
    load_pem_private_key,
    load_ssh_private_key,
    node_key_name,
    node_pub_name,
)

CURVE = ec.SECP384R1
DEFAULT_DAYS = 365
LOCAL_NAMES = (LOOPBACK, "::1", "localhost")  # the SuperExec dials the SuperLink on loopback
HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def check_host(host: str) -> str:
    """``host`` if it is an IP address or a DNS name (no scheme, no port), else ``ValueError``."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not HOSTNAME.match(host):
        raise ValueError(f"--host {host!r}: give an IP address or a DNS name, without scheme or port")
    return host.lower()


def san_entry(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the start (O_EXCL: never overwrite)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def write_public(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def pem_private(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
                issuer_key: ec.EllipticCurvePrivateKey, days: int, hosts: Sequence[str] = ()) -> x509.Certificate:
    """A CA certificate (``issuer`` None: self-signed) or a TLS server certificate for ``hosts``."""
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # a little clock skew between hosts
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is None:
        builder = (builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                                crl_sign=True, encipher_only=False, decipher_only=False), critical=True))
    else:
        builder = (builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .add_extension(x509.SubjectAlternativeName([san_entry(h) for h in hosts]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False))
    return builder.sign(issuer_key, hashes.SHA384())


def make_ca(directory: Path, days: int) -> list[str]:
    """``ca.crt`` + ``ca.key``, unless they exist (then both must)."""
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if cert_path.exists() or key_path.exists():
        load_certificate(cert_path, "CA certificate")
        return [f"kept {cert_path.name}"] + ([f"kept {key_path.name}"] if key_path.exists() else [])
    if (directory / SERVER_CERT).exists():
        raise CredentialError(f"server certificate {directory / SERVER_CERT}: exists without {CA_CERT}; a new CA "
                              f"cannot vouch for it: remove {SERVER_CERT} and {SERVER_KEY} too")
    key = ec.generate_private_key(CURVE())
    cert = certificate("crlsc-fl deployment CA", key, None, key, days)
    write_private(key_path, pem_private(key))
    write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return [f"made {cert_path.name}", f"made {key_path.name}"]


def make_server(directory: Path, hosts: Sequence[str], days: int) -> list[str]:
    """``server.crt`` + ``server.key`` issued by the CA for ``hosts``, unless they exist and cover them."""
    cert_path, key_path = directory / SERVER_CERT, directory / SERVER_KEY
    if cert_path.exists() or key_path.exists():
        cert = load_certificate(cert_path, "server certificate")
        missing = [h for h in hosts if not covers(cert, h)]
        if missing:
            raise CredentialError(f"server certificate {cert_path}: exists but is not valid for {', '.join(missing)}; "
                                  f"remove {SERVER_CERT} and {SERVER_KEY} to issue a new one")
        return [f"kept {cert_path.name}", f"kept {key_path.name}"]
    ca_key_path = directory / CA_KEY
    if not ca_key_path.exists():
        raise CredentialError(f"CA private key {ca_key_path}: missing, so no server certificate can be issued; "
                              "bring ca.key back or start over in an empty directory")
    ca = load_certificate(directory / CA_CERT, "CA certificate")
    ca_key = load_pem_private_key(ca_key_path, "CA private key")
    key = ec.generate_private_key(CURVE())
    subject = next((h for h in hosts if h not in LOCAL_NAMES), "crlsc-superlink")
    cert = certificate(subject, key, ca, ca_key, days, hosts)
    write_private(key_path, pem_private(key))
    write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return [f"made {cert_path.name}", f"made {key_path.name}"]


def make_node(directory: Path, index: int) -> list[str]:
    """``node-<i>.key`` (OpenSSH private) + ``node-<i>.pub`` (OpenSSH public line), unless the key exists."""
    key_path, pub_path = directory / node_key_name(index), directory / node_pub_name(index)
    if key_path.exists():
        key = load_ssh_private_key(key_path, f"SuperNode {index} private key")
        if pub_path.exists():
            return [f"kept {key_path.name}", f"kept {pub_path.name}"]
        write_public(pub_path, public_line(key, index))
        return [f"kept {key_path.name}", f"made {pub_path.name}"]
    if pub_path.exists():
        raise CredentialError(f"SuperNode {index} public key {pub_path}: exists without its private key {key_path}; "
                              "remove it (and unregister it at the SuperLink) to make a new pair")
    key = ec.generate_private_key(CURVE())
    write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                              serialization.NoEncryption()))
    write_public(pub_path, public_line(key, index))
    return [f"made {key_path.name}", f"made {pub_path.name}"]


def public_line(key: ec.EllipticCurvePrivateKey, index: int) -> bytes:
    """``ecdsa-sha2-nistp384 AAAA... crlsc-node-<i>``: one OpenSSH public key line."""
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + \
        f" crlsc-node-{index}\n".encode()


def make_keys(directory: Path, nodes: int, hosts: Sequence[str] = (), days: int = DEFAULT_DAYS) -> tuple[Credentials, list[str]]:
    """Make what is missing in ``directory`` for ``nodes`` SuperNodes and a SuperLink reached at ``hosts``;
    return the checked credentials and what was made or kept."""
    if nodes < 1:
        raise ValueError(f"--nodes must be >= 1, got {nodes}")
    if days < 1:
        raise ValueError(f"--days must be >= 1, got {days}")
    names = list(dict.fromkeys([*LOCAL_NAMES, *(check_host(h) for h in hosts)]))
    directory = directory.expanduser().resolve()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    done = make_ca(directory, days) + make_server(directory, names, days)
    for index in range(nodes):
        done += make_node(directory, index)
    return load_credentials(directory, nodes, dial=names), done


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path, metavar="DIR", help="where the keys go (made with mode 0700)")
    parser.add_argument("--nodes", type=int, required=True, metavar="N", help="SuperNode key pairs node-0 .. node-(N-1)")
    parser.add_argument("--host", dest="hosts", action="append", default=[], metavar="HOST",
                        help="an address SuperNodes dial the SuperLink at, added to the server certificate "
                             "(127.0.0.1, ::1 and localhost always are); repeatable")
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help=f"validity of new certificates (default {DEFAULT_DAYS})")
    return parser


def where_to_copy(creds: Credentials) -> str:
    """The short deployment note printed after making keys."""
    d = creds.directory
    return (f"SuperLink host: {d / CA_CERT}, {d / SERVER_CERT}, {d / SERVER_KEY} (+ node-*.pub to register them)\n"
            f"device i:       {d / CA_CERT}, {d / 'node-<i>.key'}\n"
            f"flwr CLI host:  {d / CA_CERT} (root-certificates in $FLWR_HOME/config.toml)\n"
            f"keep offline:   {d / CA_KEY}\n"
            f"server certificate valid for: {', '.join(creds.hosts)}")


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m crlsc_fl.security.keys") -> int:
    """``crlsc-fl keys``; exit 0, or 2 with ``error: <file>: <what is wrong>``."""
    args = build_parser(prog).parse_args(argv)
    try:
        creds, done = make_keys(args.directory, args.nodes, args.hosts, args.days)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(done))
    print(where_to_copy(creds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
