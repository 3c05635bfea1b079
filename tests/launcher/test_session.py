"""A SuperLink with TLS and SuperNode authentication (what ``crlsc-fl deploy`` starts) lets in
only SuperNodes whose key is registered and that trust our CA; nothing answers plaintext.

One SuperLink for the module, with five SuperNodes started at once: one registered (the
control: it must join), one whose key was never registered, one without the CA certificate,
one without a key, one in plaintext.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass

import psutil
import pytest

from crlsc_fl.launcher.flower_cli import count_supernodes, register_supernode
from crlsc_fl.launcher.processes import poll_until, tail
from crlsc_fl.launcher.session import FlowerSession
from crlsc_fl.security.credentials import Credentials
from crlsc_fl.security.keys import make_keys

pytestmark = pytest.mark.slow

REFUSED_WITHIN = 90.0  # seconds for the refused SuperNodes to give up (measured: ~5 s after start)


@dataclass
class SecureLink:
    session: FlowerSession
    credentials: Credentials
    nodes: dict[str, psutil.Popen]

    def log(self, name: str) -> str:
        return tail(self.session.supervisor.log_path(name), lines=200)


@pytest.fixture(scope="module")
def secure_link(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureLink]:
    root = tmp_path_factory.mktemp("secure")
    creds, _ = make_keys(root / "keys", 4)
    session = FlowerSession(root, mode="tls-test", simulation=False, credentials=creds)
    with session:
        ca, key = str(creds.ca_cert), lambda i: str(creds.nodes[i].private_key)
        register_supernode(session.connection, creds.nodes[2].public_key, session.env)  # only its CA is missing
        setups = {
            "registered": session.supernode_security(0),  # registers node 0
            "unregistered": creds.supernode_args(1),  # node 1's key is never registered
            "without-ca": ["--auth-supernode-private-key", key(2)],  # system CAs only
            "without-key": ["--root-certificates", ca],
            "plaintext": ["--insecure"],
        }
        nodes = {name: session.supervisor.start(name, session.supernode_argv(i, len(setups), security), session.env)
                 for i, (name, security) in enumerate(setups.items())}
        refused = [nodes[n] for n in ("unregistered", "without-ca", "without-key")]
        poll_until(lambda: count_supernodes(session.connection, session.env) >= 1 and all(p.poll() is not None for p in refused),
                   timeout=REFUSED_WITHIN, interval=0.5, what="the registered SuperNode to join and the others to give up")
        yield SecureLink(session, creds, nodes)
    assert session.leftovers == []


def test_auth_registered_supernode_joins(secure_link: SecureLink) -> None:
    assert secure_link.nodes["registered"].poll() is None
    assert count_supernodes(secure_link.session.connection, secure_link.session.env) == 1  # and nobody else


def test_auth_supernode_with_an_unregistered_key_is_refused(secure_link: SecureLink) -> None:
    assert secure_link.nodes["unregistered"].returncode != 0
    assert "Failed to activate SuperNode" in secure_link.log("unregistered")
    assert "No SuperNode found with the given public key" in secure_link.log("superlink")


def test_auth_supernode_without_a_key_is_refused(secure_link: SecureLink) -> None:
    assert secure_link.nodes["without-key"].returncode != 0
    assert "SuperNode authentication is enabled. All SuperNodes must be registered" in secure_link.log("without-key")


def test_tls_supernode_without_the_ca_fails_the_handshake(secure_link: SecureLink) -> None:
    assert secure_link.nodes["without-ca"].returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in secure_link.log("without-ca")


def test_tls_plaintext_supernode_never_joins(secure_link: SecureLink) -> None:
    assert secure_link.nodes["plaintext"].poll() is None  # Flower retries forever ...
    assert "Connection attempt failed" in secure_link.log("plaintext")  # ... and never gets an answer
    assert count_supernodes(secure_link.session.connection, secure_link.session.env) == 1


def test_tls_client_without_the_ca_fails_the_handshake(secure_link: SecureLink) -> None:
    port = secure_link.session.port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
        ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")  # the system's CAs
    ours = ssl.create_default_context(cafile=str(secure_link.credentials.ca_cert))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ours, timeout=5)
    conn.request("GET", "/health")
    assert conn.getresponse().status == 200
    conn.close()
    plain = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    with pytest.raises((http.client.RemoteDisconnected, http.client.BadStatusLine, ConnectionResetError)):
        plain.request("GET", "/health")
        plain.getresponse()
    plain.close()


def test_tls_flwr_cli_trusts_only_our_ca(secure_link: SecureLink) -> None:
    config = tomllib.loads((secure_link.session.home / "config.toml").read_text())
    connection = config["superlink"][secure_link.session.connection]
    assert connection == {"address": f"127.0.0.1:{secure_link.session.port}", "root-certificates": str(secure_link.credentials.ca_cert)}
    assert "insecure" not in connection
