"""``crlsc-fl keys``: the CA, the SuperLink certificate and the SuperNode keys, checked with
Flower's own loaders (what ``flwr supernode register`` and ``flower-supernode`` read)."""

from __future__ import annotations

import ipaddress
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flwr.cli.supernode.register import try_load_public_key
from flwr.supercore.primitives.asymmetric import bytes_to_public_key, public_key_to_bytes, uses_nist_ec_curve

from crlsc_fl.security import keys
from crlsc_fl.security.credentials import load_credentials

SCRIPT = Path(sys.executable).parent / "crlsc-fl"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_tls_keys_command_makes_a_ca_a_server_certificate_and_node_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "keys"
    assert keys.main([str(out), "--nodes", "2", "--host", "10.1.2.3", "--host", "SuperLink.example"]) == 0
    printed = capsys.readouterr().out
    names = {"ca.crt", "ca.key", "server.crt", "server.key", "node-0.key", "node-0.pub", "node-1.key", "node-1.pub"}
    assert {p.name for p in out.iterdir()} == names
    assert mode(out) == 0o700
    for private in ("ca.key", "server.key", "node-0.key", "node-1.key"):
        assert mode(out / private) == 0o600, private
    cert = x509.load_pem_x509_certificate((out / "server.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "superlink.example"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {ipaddress.ip_address(a) for a in ("127.0.0.1", "::1", "10.1.2.3")}
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate((out / "ca.crt").read_bytes()))
    for i in range(2):
        # what `flwr supernode register` sends = the public half of what `flower-supernode` signs with
        registered = bytes_to_public_key(try_load_public_key(out / f"node-{i}.pub"))
        private = serialization.load_ssh_private_key((out / f"node-{i}.key").read_bytes(), None)
        assert isinstance(private, ec.EllipticCurvePrivateKey) and uses_nist_ec_curve(registered)
        assert public_key_to_bytes(private.public_key()) == public_key_to_bytes(registered)
    assert "keep offline" in printed and "superlink.example" in printed
    assert len(load_credentials(out, 2, dial=("10.1.2.3", "superlink.example")).nodes) == 2


def test_tls_keys_rerun_keeps_existing_files_and_adds_nodes(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    assert keys.main([str(out), "--nodes", "1"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert keys.main([str(out), "--nodes", "3"]) == 0
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert all(after[name] == data for name, data in before.items())  # registered keys stay valid
    assert {"node-1.key", "node-2.pub"} <= set(after)
    assert load_credentials(out, 3).nodes[2].public_key.name == "node-2.pub"


def test_tls_keys_refuse_to_widen_an_existing_server_certificate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "keys"
    assert keys.main([str(out), "--nodes", "1", "--host", "10.0.0.1"]) == 0
    assert keys.main([str(out), "--nodes", "1", "--host", "10.0.0.2"]) == 2
    err = capsys.readouterr().err
    assert "server.crt" in err and "not valid for 10.0.0.2" in err and "remove server.crt and server.key" in err
    (out / "server.crt").unlink()
    (out / "server.key").unlink()
    assert keys.main([str(out), "--nodes", "1", "--host", "10.0.0.2"]) == 0  # reissued by the same CA


@pytest.mark.parametrize("host", ["https://superlink", "10.0.0.1:9092", "bad_host!", ""])
def test_tls_keys_reject_a_host_that_is_no_address(tmp_path: Path, host: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert keys.main([str(tmp_path / "keys"), "--nodes", "1", "--host", host]) == 2
    assert f"--host {host!r}" in capsys.readouterr().err
    assert not (tmp_path / "keys").exists()


@pytest.mark.parametrize(("args", "message"), [(["--nodes", "0"], "--nodes must be >= 1"), (["--nodes", "1", "--days", "0"], "--days")])
def test_tls_keys_reject_bad_counts(tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert keys.main([str(tmp_path / "keys"), *args]) == 2
    assert message in capsys.readouterr().err


def test_tls_keys_is_a_crlsc_fl_subcommand(tmp_path: Path) -> None:
    result = subprocess.run([str(SCRIPT), "keys", str(tmp_path / "k"), "--nodes", "1"], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "k" / "node-0.key").is_file() and "made server.crt" in result.stdout
