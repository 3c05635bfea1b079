"""The checks on a key directory before a secure deployment starts: every broken file is
named with what is wrong."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from crlsc_fl.security.credentials import CredentialError, Security, load_credentials
from crlsc_fl.security.keys import make_keys


@pytest.fixture(scope="module")
def key_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two independent key sets (two CAs) of 2 nodes each."""
    root = tmp_path_factory.mktemp("keys")
    make_keys(root / "a", 2)
    make_keys(root / "b", 2)
    return root / "a", root / "b"


def ed25519_openssh(path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    path.chmod(0o600)


def replace(name: str, other: str | None = None) -> Callable[[Path, Path], None]:
    """Break ``name`` in the first set: copy ``other`` (default: the same name) from the second."""
    def apply(d: Path, b: Path) -> None:
        shutil.copy2(b / (other or name), d / name)
    return apply


BREAKAGES: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "missing-ca": (lambda d, b: (d / "ca.crt").unlink(), "CA certificate {d}/ca.crt: no such file (make them with `crlsc-fl keys"),
    "garbage-ca": (lambda d, b: (d / "ca.crt").write_text("hello"), "CA certificate {d}/ca.crt: not a PEM X.509 certificate"),
    "server-cert-of-another-ca": (replace("server.crt"), "server certificate {d}/server.crt: not issued by the CA {d}/ca.crt"),
    "server-key-of-another-cert": (replace("server.key"), "server private key {d}/server.key: not the key of the server certificate"),
    "server-cert-as-ca": (replace("ca.crt", "server.crt"), "CA certificate {d}/ca.crt: not a CA certificate"),
    "node-pub-of-another-key": (replace("node-1.pub"), "SuperNode 1 public key {d}/node-1.pub: not the public half of {d}/node-1.key"),
    "node-key-readable-by-others": (lambda d, b: (d / "node-0.key").chmod(0o644),
                                    "SuperNode 0 private key {d}/node-0.key: readable or writable by other users (mode 0644); run chmod 600"),
    "server-key-readable-by-others": (lambda d, b: (d / "server.key").chmod(0o640), "run chmod 600 {d}/server.key"),
    "garbage-node-key": (lambda d, b: (d / "node-0.key").write_text("not a key"), "{d}/node-0.key: not an OpenSSH private key"),
    "ed25519-node-key": (lambda d, b: ed25519_openssh(d / "node-1.key"), "{d}/node-1.key: must be an ECDSA key on a NIST curve"),
    "garbage-node-pub": (lambda d, b: (d / "node-0.pub").write_text("ssh-rsa ???"), "{d}/node-0.pub: not an OpenSSH public key line"),
    "same-key-twice": (lambda d, b: [shutil.copy2(d / f"node-0.{x}", d / f"node-1.{x}") for x in ("key", "pub")],
                       "{d}/node-1.pub: the same key as SuperNode 0's"),
    "directory-for-a-file": (lambda d, b: ((d / "server.key").unlink(), (d / "server.key").mkdir()), "{d}/server.key: not a regular file"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_tls_auth_credentials_name_the_broken_file(key_sets: tuple[Path, Path], tmp_path: Path, breakage: str) -> None:
    good, other = key_sets
    d = tmp_path / "keys"
    shutil.copytree(good, d)
    load_credentials(d, 2)  # the copy is fine ...
    action, message = BREAKAGES[breakage]
    action(d, other)
    with pytest.raises(CredentialError) as err:  # ... until broken
        load_credentials(d, 2)
    assert message.format(d=d.resolve()) in str(err.value)


def test_tls_auth_credentials_need_a_key_per_supernode(key_sets: tuple[Path, Path]) -> None:
    good, _ = key_sets
    with pytest.raises(CredentialError, match=r"SuperNode 2 private key .*node-2.key: no such file"):
        load_credentials(good, 3)


def test_tls_credentials_need_a_certificate_for_the_address_nodes_dial(key_sets: tuple[Path, Path]) -> None:
    good, _ = key_sets
    with pytest.raises(CredentialError, match=r"server.crt: not valid for 10.9.9.9 \(it names localhost, 127.0.0.1, ::1\)"):
        load_credentials(good, 1, dial=("10.9.9.9",))


def test_tls_credentials_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CredentialError, match=r"key directory .*nowhere: no such directory \(make them with `crlsc-fl keys"):
        load_credentials(tmp_path / "nowhere", 1)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_tls_credentials_unreadable_file(key_sets: tuple[Path, Path], tmp_path: Path) -> None:
    d = tmp_path / "keys"
    shutil.copytree(key_sets[0], d)
    (d / "ca.crt").chmod(0)
    with pytest.raises(CredentialError, match=r"ca.crt: cannot read it \(Permission denied\)"):
        load_credentials(d, 1)


def test_tls_auth_flower_options_use_the_checked_files(key_sets: tuple[Path, Path]) -> None:
    creds = load_credentials(key_sets[0], 2)
    d = creds.directory
    assert creds.superlink_args() == ["--ssl-ca-certfile", f"{d}/ca.crt", "--ssl-certfile", f"{d}/server.crt",
                                      "--ssl-keyfile", f"{d}/server.key", "--enable-supernode-auth"]
    assert creds.supernode_args(1) == ["--root-certificates", f"{d}/ca.crt", "--auth-supernode-private-key", f"{d}/node-1.key"]
    with pytest.raises(ValueError, match="--insecure and --keys exclude each other"):
        Security(insecure=True, keys=creds)
    assert "plaintext" in Security(insecure=True).describe() and "SuperNode authentication" in Security().describe()
