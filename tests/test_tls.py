"""TLS to a remote server (RELIABILITY row 22), against real parts: certificates made here
(a CA, a server certificate for 127.0.0.1, a client certificate, an expired one, one made
out to another host), the embedded tritonserver with its gRPC port on TLS
(``--grpc-use-ssl``, and ``--grpc-use-ssl-mutual``), and stunnel as a real TLS-terminating
proxy in front of its HTTP port (Triton's HTTP endpoint has no TLS of its own)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST, close_during_send
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import analyzer_widgets as aw
from analyzer_widgets import events
from analyzer_widgets.cli import build_parser, settings_from_args
from analyzer_widgets.config import Tls, make_settings
from analyzer_widgets.loadgen._worker import PointJob, _GrpcSender, _HttpSender
from analyzer_widgets.loadgen.inputs import build_inputs, expected_outputs
from analyzer_widgets.server import LocalServer, TritonControl

MEASURED = {"ok", "unstable"}
SWEEP: dict[str, Any] = {"models": ["mlp_numpy"], "launch_mode": "remote", "batch_sizes": [1], "concurrency": [1], **FAST}


# -- certificates ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path  # signs everything below but other_client
    other_ca: Path  # a CA nothing here was signed by: the wrong CA
    server: Pair  # 127.0.0.1 and localhost
    expired: Pair  # the same names, valid until yesterday
    elsewhere: Pair  # made out to triton.example.com only
    client: Pair  # for mutual TLS
    other_client: Pair  # signed by other_ca: a client certificate the server does not trust


def _write(folder: Path, name: str, key: Any, cert: x509.Certificate) -> Pair:
    pair = Pair(folder / f"{name}.pem", folder / f"{name}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return pair


def _ca(folder: Path, name: str) -> tuple[Any, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"analyzer-widgets test {name}")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write(folder, name, key, cert)
    return key, cert


def _leaf(folder: Path, name: str, ca: tuple[Any, x509.Certificate], hosts: tuple[str, ...] = (),
          client: bool = False, expired: bool = False) -> Pair:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    start, end = (now - dt.timedelta(days=10), now - dt.timedelta(days=1)) if expired else \
        (now - dt.timedelta(days=1), now + dt.timedelta(days=30))
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if hosts:
        names = [x509.IPAddress(ipaddress.ip_address(h)) if h[0].isdigit() else x509.DNSName(h) for h in hosts]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return _write(folder, name, key, builder.sign(ca_key, hashes.SHA256()))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, other_ca = _ca(folder, "ca"), _ca(folder, "other-ca")
    local = ("127.0.0.1", "localhost")
    return Pki(folder / "ca.pem", folder / "other-ca.pem", _leaf(folder, "server", ca, local),
               _leaf(folder, "expired", ca, local, expired=True), _leaf(folder, "elsewhere", ca, ("triton.example.com",)),
               _leaf(folder, "client", ca, client=True), _leaf(folder, "other-client", other_ca, client=True))


# -- servers -----------------------------------------------------------------------------------
def start_tls_server(pki: Pki, pair: Pair, mutual: bool = False) -> LocalServer:
    """The embedded tritonserver, its gRPC port on TLS with ``pair`` (and asking every client
    for a certificate signed by the test CA where ``mutual``); its HTTP port stays plain."""
    flags = ["--grpc-use-ssl=true", f"--grpc-server-cert={pair.cert}", f"--grpc-server-key={pair.key}",
             f"--grpc-root-cert={pki.ca}"]
    if mutual:
        flags.append("--grpc-use-ssl-mutual=true")
    server = LocalServer(aw.EXAMPLE_REPOSITORY, aw.ServerSettings(extra_args=tuple(flags)))
    server.start()
    return server


@pytest.fixture(scope="module")
def tls_server(pki: Pki) -> Iterator[LocalServer]:
    server = start_tls_server(pki, pki.server)
    try:
        yield server
    finally:
        server.stop()


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stunnel() -> str:
    """stunnel's path; skipped (failed under CI=true) where it is not installed."""
    found = shutil.which("stunnel4") or shutil.which("stunnel")
    if found is None:
        problem = "stunnel is not installed (scripts/install-system-deps.sh installs Debian's stunnel4)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the HTTPS tests: {problem}")
        pytest.skip(problem)
    return found


@pytest.fixture(scope="module")
def https_proxy(tls_server: LocalServer, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``127.0.0.1:PORT`` of stunnel terminating TLS (the server certificate) in front of the
    TLS server's plain HTTP port."""
    binary = _stunnel()
    folder = tmp_path_factory.mktemp("stunnel")
    port = _free_port()
    conf = folder / "stunnel.conf"
    conf.write_text(f"foreground = yes\npid =\nsyslog = no\ndebug = warning\n[triton-http]\n"
                    f"accept = 127.0.0.1:{port}\nconnect = {tls_server.endpoints.http}\n"
                    f"cert = {pki.server.cert}\nkey = {pki.server.key}\n")
    log = (folder / "stunnel.log").open("wb")
    proc = subprocess.Popen([binary, str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"stunnel did not start: {(folder / 'stunnel.log').read_text()}")
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _measured(result: aw.SweepResult) -> None:
    df = result.to_frame()
    assert list(df["model"]) == ["mlp_numpy"]
    assert set(df["status"]) <= MEASURED, df[["status", "reason"]].to_string()
    assert (df["throughput_infer_per_s"] > 0).all() and (df["error_count"] == 0).all()


# -- sweeps over TLS -------------------------------------------------------------------------------
@pytest.mark.server
def test_a_grpcs_sweep_measures_the_model(tls_server: LocalServer, pki: Pki) -> None:
    _measured(aw.profile(url=f"grpcs://{tls_server.endpoints.grpc}", ssl_ca=pki.ca, **SWEEP))


@pytest.mark.server
def test_an_https_sweep_through_a_tls_proxy_measures_the_model(https_proxy: str, pki: Pki) -> None:
    _measured(aw.profile(url=f"https://{https_proxy}", protocol="http", ssl_ca=pki.ca, **SWEEP))


@pytest.mark.server
def test_mutual_tls_works_with_the_client_certificate_and_is_refused_without(pki: Pki) -> None:
    server = start_tls_server(pki, pki.server, mutual=True)
    try:
        url = f"grpcs://{server.endpoints.grpc}"
        _measured(aw.profile(url=url, ssl_ca=pki.ca, ssl_cert=pki.client.cert, ssl_key=pki.client.key, **SWEEP))
        seen: list[object] = []
        with pytest.raises(aw.ServerStartError) as without:
            aw.profile(url=url, ssl_ca=pki.ca, on_event=seen.append, **SWEEP)
        message = str(without.value)
        assert message.startswith(f"TLS to {url} failed:") and "--ssl-cert and --ssl-key" in message, message
        with pytest.raises(aw.ServerStartError) as untrusted:
            aw.profile(url=url, ssl_ca=pki.ca, ssl_cert=pki.other_client.cert, ssl_key=pki.other_client.key, **SWEEP)
        assert f"TLS to {url} failed:" in str(untrusted.value), untrusted.value
        assert "not accept this client's certificate" in str(untrusted.value), untrusted.value
        assert not any(isinstance(e, events.PointStarted) for e in seen)
    finally:
        server.stop()


# -- certificate problems: clear errors before any load --------------------------------------------
# Triton sends its CA with its certificate, stunnel the certificate alone: OpenSSL's words differ
WRONG_CA = r"(self-signed certificate in certificate chain|unable to get local issuer certificate) \(--ssl-ca names"


def assert_refused_before_any_load(address: str, protocol: str, ca: Path, cause: str) -> None:
    """A sweep over TLS to ``address`` stops at the server's check with the URL and ``cause``
    (a regular expression), and so does a first control call that was not checked first."""
    url = f"{protocol}s://{address}"
    expected = re.compile(re.escape(f"TLS to {url} failed: certificate verify failed: ") + cause)
    seen: list[object] = []
    started = time.monotonic()
    with pytest.raises(aw.ServerStartError) as raised:
        aw.profile(url=url, protocol=protocol, ssl_ca=ca, on_event=seen.append, **SWEEP)
    assert expected.match(str(raised.value)), raised.value
    assert time.monotonic() - started < 10
    # nothing was loaded, measured or even asked of the server
    assert not any(isinstance(e, events.ServerReady | events.ModelLoading | events.PointStarted) for e in seen)

    control = TritonControl(address, protocol, tls=Tls(ca=ca), timeout_s=5)
    try:
        with pytest.raises(aw.ServerError) as first_call:
            control.server_version()
        assert expected.match(str(first_call.value)), first_call.value
    finally:
        control.close()


@pytest.mark.server
@pytest.mark.faults
def test_a_certificate_problem_is_a_clear_error_before_any_load(tls_server: LocalServer, pki: Pki) -> None:
    """A wrong CA, an expired certificate and one made out to another host."""
    assert_refused_before_any_load(tls_server.endpoints.grpc, "grpc", pki.other_ca, WRONG_CA)
    for pair, cause in ((pki.expired, r"certificate has expired \(the server's certificate has expired"),
                        (pki.elsewhere, r"IP address mismatch, certificate is not valid for '127\.0\.0\.1'\. "
                                        r"\(the server's certificate is not made out to 127\.0\.0\.1")):
        server = start_tls_server(pki, pair)
        try:
            assert_refused_before_any_load(server.endpoints.grpc, "grpc", pki.ca, cause)
        finally:
            server.stop()


@pytest.mark.server
@pytest.mark.faults
def test_a_wrong_ca_over_https_is_a_clear_error_before_any_load(https_proxy: str, pki: Pki) -> None:
    assert_refused_before_any_load(https_proxy, "http", pki.other_ca, WRONG_CA)


# -- never clear text ----------------------------------------------------------------------------------
class Listener:
    """A TCP listener on 127.0.0.1 that hands each connection to ``handle`` in its own thread."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.listener.close()
        self.thread.join(2)


class FirstBytes(Listener):
    """A plain TCP listener that keeps the first bytes of every connection, then hangs up:
    what each client sends before it hears anything."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(2)
            try:
                self.seen.append(conn.recv(5))
            except OSError:
                self.seen.append(b"")

    def take(self) -> list[bytes]:
        time.sleep(0.1)  # the last connection's bytes
        seen, self.seen = self.seen, []
        return seen


@pytest.mark.faults
def test_nothing_is_sent_in_clear_text_to_a_url_that_asks_for_tls(pki: Pki) -> None:
    """Every client the analyzer has opens with a TLS ClientHello (a handshake record, 0x16
    0x03) on a URL that asks for TLS, even when the server there answers in clear text."""
    peer = FirstBytes()
    tls = Tls(ca=pki.ca, cert=pki.client.cert, key=pki.client.key)
    options = {"ssl_ca": pki.ca, "ssl_cert": pki.client.cert, "ssl_key": pki.client.key}
    try:
        clients: dict[str, Any] = {}
        for protocol, scheme in (("grpc", "grpcs"), ("http", "https")):
            def sweep(protocol: str = protocol, scheme: str = scheme) -> None:
                with pytest.raises(aw.ServerStartError, match=f"TLS to {scheme}://{peer.address} failed"):
                    aw.profile(url=f"{scheme}://{peer.address}", protocol=protocol, **options, **SWEEP)

            def control(protocol: str = protocol) -> None:
                ctl = TritonControl(peer.address, protocol, tls=tls, timeout_s=3)
                try:
                    with pytest.raises(aw.ServerError):
                        ctl.server_version()
                finally:
                    ctl.close()

            def sender(protocol: str = protocol) -> None:
                job = PointJob(address=peer.address, protocol=protocol, model="m", version="", inputs={},
                               input_datatypes={}, outputs=(), concurrency=1, timeout_s=3, tls=tls)
                s = _GrpcSender(job) if protocol == "grpc" else _HttpSender(job)
                try:
                    assert s.send() is not None  # the request failed
                finally:
                    s.close()

            clients.update({f"sweep over {scheme}": sweep, f"control client over {scheme}": control,
                            f"load generator over {scheme}": sender})
        for name, client in clients.items():
            client()
            seen = peer.take()
            assert seen, f"{name}: no connection was made"
            assert all(first[:2] == b"\x16\x03" for first in seen), f"{name} sent {seen}"
    finally:
        peer.close()


# -- the load generator's connections over TLS ---------------------------------------------------------
@pytest.mark.server
def test_the_load_generators_tls_connections_are_kept_between_requests(tls_server: LocalServer, https_proxy: str,
                                                                        pki: Pki) -> None:
    """An idle connection is looked at before the next request without waiting (a TLS socket
    says 'want read' where a plain one says 'would block'), and kept."""
    for protocol, address in (("grpc", tls_server.endpoints.grpc), ("http", https_proxy)):
        _keeps_its_connection(protocol, address, tls_server, pki)


def _keeps_its_connection(protocol: str, address: str, tls_server: LocalServer, pki: Pki) -> None:
    tls = Tls(ca=pki.ca)
    control = TritonControl(tls_server.endpoints.grpc, "grpc", tls=tls)
    try:
        control.load("mlp_numpy")
        info = control.model_info("mlp_numpy")
        arrays, datatypes = build_inputs(info, 1, {}, "random")
        job = PointJob(address=address, protocol=protocol, model="mlp_numpy", version="", inputs=arrays,
                       input_datatypes=datatypes, outputs=expected_outputs(info, 1), concurrency=1, timeout_s=10,
                       tls=tls)
        s = _GrpcSender(job) if protocol == "grpc" else _HttpSender(job)
        try:
            answers = []
            for _ in range(3):
                answers.append(s.send())
                time.sleep(0.05)  # longer than the gRPC connection's idle check
            assert answers == [None] * 3
            assert len(s._open) == 1  # one connection for all three
        finally:
            s.close()
    finally:
        try:
            control.unload("mlp_numpy")
        finally:
            control.close()


# -- the settings -------------------------------------------------------------------------------------
def test_the_scheme_must_agree_with_the_protocol(pki: Pki) -> None:
    for url, protocol in (("grpcs://h:1", "http"), ("https://h:1", "grpc"), ("http://h:1", "grpc")):
        with pytest.raises(aw.ConfigError) as raised:
            aw.make_spec(models="m", launch_mode="remote", url=url, protocol=protocol)
        assert raised.value.field == "url" and "--protocol" in str(raised.value), raised.value
    with pytest.raises(aw.ConfigError) as raised:
        aw.ServerSettings(launch_mode="remote", url="ftp://h:1")
    assert raised.value.field == "url"
    spec = aw.make_spec(models="m", launch_mode="remote", url="https://h:1/", protocol="http", ssl_ca=pki.ca)
    assert spec.server.address == "h:1" and spec.server.tls == Tls(ca=pki.ca)
    assert aw.make_spec(models="m", launch_mode="remote", url="grpc://h:1").server.tls is None
    assert aw.make_spec(models="m", launch_mode="remote", url="h:1").server.tls is None


def test_tls_files_are_checked_and_never_ignored(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(aw.ConfigError) as raised:
        aw.ServerSettings(launch_mode="remote", url="grpcs://h:1", ssl_ca=tmp_path / "missing.pem")
    assert raised.value.field == "ssl_ca" and "existing file" in str(raised.value)
    with pytest.raises(aw.ConfigError) as raised:
        aw.ServerSettings(launch_mode="remote", url="grpcs://h:1", ssl_cert=pki.client.cert)
    assert raised.value.field == "ssl_cert" and "ssl_key" in str(raised.value)
    with pytest.raises(aw.ConfigError) as raised:
        aw.ServerSettings(launch_mode="remote", url="grpcs://h:1", ssl_cert=pki.client.cert, ssl_key=pki.server.key)
    assert raised.value.field == "ssl_key" and "does not go with" in str(raised.value)
    # a CA for a URL that asks for clear text is a mistake to say, not to ignore
    for url in ("h:1", "grpc://h:1"):
        with pytest.raises(aw.ConfigError) as raised:
            aw.ServerSettings(launch_mode="remote", url=url, ssl_ca=pki.ca)
        assert raised.value.field == "ssl_ca" and "grpcs://" in str(raised.value)


def test_the_command_line_takes_the_tls_flags(pki: Pki) -> None:
    args = build_parser().parse_args(["profile", "-m", "m", "--launch-mode", "remote", "--url", "grpcs://h:1",
                                      "--ssl-ca", str(pki.ca), "--ssl-cert", str(pki.client.cert),
                                      "--ssl-key", str(pki.client.key)])
    spec, _ = make_settings(**settings_from_args(args))
    assert spec.server.tls == Tls(pki.ca, pki.client.cert, pki.client.key)


class SilentTlsPeer(Listener):
    """A TLS server (the test server certificate) that completes every handshake, reads what
    comes, and never answers."""

    def __init__(self, pki: Pki) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pki.server.cert, pki.server.key)
        self.context.set_alpn_protocols(["h2", "http/1.1"])
        self.handshakes = 0
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                self.handshakes += 1
                while tls.recv(1 << 16):
                    pass
        except OSError:
            pass


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_close_ends_a_send_waiting_on_a_tls_connection(protocol: str, pki: Pki) -> None:
    """Stopping a point closes every connection so that a thread waiting for an answer
    returns at once: over TLS too."""
    peer = SilentTlsPeer(pki)
    try:
        job = PointJob(address=peer.address, protocol=protocol, model="m", version="", inputs={}, input_datatypes={},
                       outputs=(), concurrency=1, timeout_s=10, tls=Tls(ca=pki.ca))
        assert close_during_send(_GrpcSender(job) if protocol == "grpc" else _HttpSender(job), 0.3) is not None
        assert peer.handshakes == 1
    finally:
        peer.close()
