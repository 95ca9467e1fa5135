"""The small CA for mutual TLS: what it writes, what it refuses, and its CLI."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from broker.pki import load_request, make_key_and_request, public_key_sha256, CertificateAuthority, PkiError, common_name
from broker.topics import TopicError
from gridwire.cli import app


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path_factory.mktemp("ca"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_client_certificate_names_the_concentrator_and_verifies_against_the_ca(ca, tmp_path):
    files = ca.issue_client(tmp_path, "conc-42")
    assert common_name(files.cert_file) == "conc-42"
    assert mode(files.key_file) == 0o600
    cert = x509.load_pem_x509_certificate(files.cert_file.read_bytes())
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    cert.verify_directly_issued_by(ca.cert)
    # OpenSSL (what Mosquitto uses) accepts the pair as a client identity.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(files.cert_file, files.key_file)


def test_server_certificate_carries_ip_and_dns_names(ca, tmp_path):
    files = ca.issue_server(tmp_path, names=["broker.example.net", "10.0.0.7"])
    cert = x509.load_pem_x509_certificate(files.cert_file.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["broker.example.net"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.7")]
    assert mode(files.key_file) == 0o600


def test_ca_is_not_overwritten_and_loads_back(ca, tmp_path):
    directory = ca.cert_file.parent
    with pytest.raises(PkiError, match="already holds a CA"):
        CertificateAuthority.create(directory)
    assert mode(directory / "ca.key") == 0o600
    loaded = CertificateAuthority.load(directory)
    assert loaded.cert == ca.cert
    loaded.issue_client(tmp_path, "conc-1")
    with pytest.raises(PkiError, match="cannot load"):
        CertificateAuthority.load(tmp_path / "nowhere")


@settings(max_examples=30, deadline=None)
@given(prefix=st.text(max_size=5), bad=st.sampled_from(["/", "+", "#", "\x00"]), suffix=st.text(max_size=5))
def test_an_id_that_would_escape_the_acl_fence_is_refused(ca, tmp_path_factory, prefix, bad, suffix):
    # The CN becomes %u in "concentrator/%u/#": a '/', '+' or '#' in it would widen the fence.
    with pytest.raises(TopicError):
        ca.issue_client(tmp_path_factory.getbasetemp() / "refused", prefix + bad + suffix)


def test_cli_builds_a_ca_a_server_and_a_client(tmp_path):
    runner = CliRunner()
    pki = tmp_path / "pki"
    for args in (["init-ca", "--dir", str(pki)],
                 ["server", "--dir", str(pki), "--name", "mqtt.example.net", "--name", "127.0.0.1"],
                 ["client", "conc-7", "--dir", str(pki)]):
        result = runner.invoke(app, ["broker", "pki", *args])
        assert result.exit_code == 0, result.output
    assert common_name(pki / "server.pem") == "mqtt.example.net"
    assert common_name(pki / "clients" / "conc-7.pem") == "conc-7"
    assert mode(pki / "clients" / "conc-7.key") == 0o600
    again = runner.invoke(app, ["broker", "pki", "init-ca", "--dir", str(pki)])
    assert again.exit_code == 2 and "already holds a CA" in again.output
    bad = runner.invoke(app, ["broker", "pki", "client", "a/b", "--dir", str(pki)])
    assert bad.exit_code == 2


@pytest.mark.parametrize("name", ["gridwire-cloud", "Gridwire-Cloud", "app.org-a"])
def test_no_client_certificate_named_like_a_privileged_account(ca, tmp_path, name):
    with pytest.raises(PkiError):
        ca.issue_client(tmp_path, name, reserved=["gridwire-cloud"])
    csr = make_key_and_request(tmp_path / "appliance.key")
    with pytest.raises(PkiError):
        ca.sign_request(csr, name, reserved=["gridwire-cloud"])
    assert [p.name for p in tmp_path.iterdir()] == ["appliance.key"]


def test_a_signing_request_gets_a_certificate_for_its_own_key_with_the_callers_cn(ca, tmp_path):
    key_file = tmp_path / "appliance.key"
    csr = make_key_and_request(key_file)
    assert mode(key_file) == 0o600
    again = make_key_and_request(key_file)  # the key is kept: the same key asks again
    cert = ca.sign_request(csr, "conc-8")
    assert public_key_sha256(cert) == public_key_sha256(load_request(again))
    assert cert.subject.rfc4514_string() == "CN=conc-8"
    tampered = csr.replace(csr.splitlines()[5], csr.splitlines()[5][:-4] + "AAAA")
    with pytest.raises(PkiError):
        ca.sign_request(tampered, "conc-8")
    with pytest.raises(PkiError, match="not a PEM"):
        ca.sign_request("hello", "conc-8")


def test_ensure_pki_creates_once_and_keeps_what_exists(tmp_path):
    from broker.pki import ensure_pki

    first = ensure_pki(tmp_path / "ca", clients=["conc-7"], server_dir=tmp_path / "broker")
    kept = {p: p.read_bytes() for p in (tmp_path / "broker").iterdir()}
    kept[tmp_path / "ca" / "clients" / "conc-7.pem"] = (tmp_path / "ca" / "clients" / "conc-7.pem").read_bytes()
    again = ensure_pki(tmp_path / "ca", clients=["conc-7"], server_dir=tmp_path / "broker")
    assert again.cert == first.cert
    assert {p: p.read_bytes() for p in kept} == kept
    assert not (tmp_path / "broker" / "ca.key").exists()  # the broker's directory never holds the CA key
    assert (tmp_path / "broker" / "ca.pem").read_bytes() == first.cert_file.read_bytes()
