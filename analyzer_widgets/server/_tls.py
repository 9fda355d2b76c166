"""Why a TLS connection to a remote server fails, in words a user can act on.

tritonclient's clients say little when TLS fails (gRPC: "failed to connect to all
addresses ... Ssl handshake failed"), so before any load, and again when a control call
fails, one connection is opened here with the ssl module, with the settings every client
of the sweep uses, and its error is read for the cause: the certificate's (not signed by
the CA given, expired, made out to another host), or the server's (it does not speak TLS
on that port, or it refused this client's certificate or the lack of one).
"""

from __future__ import annotations

import re
import socket
import ssl

from analyzer_widgets.config import Tls

# the client's side of a first exchange, sent once the handshake is done: with TLS 1.3 a
# server checks the client's certificate after the client has finished its handshake, so
# a refusal arrives as an alert on the first read
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS

_UNKNOWN_CA = {18, 19, 20, 21, 2}  # self-signed, self-signed in chain, issuer unknown (locally), leaf unverifiable
_EXPIRED, _NOT_YET_VALID = 10, 9
_NAME_MISMATCH = {62, 64}  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


def shown_url(address: str, protocol: str, tls: Tls | None) -> str:
    """The URL as the user gave it, scheme included (``grpcs://host:port``)."""
    scheme = "grpc" if protocol == "grpc" else "http"
    return f"{scheme}{'s' if tls is not None else ''}://{address}"


def tls_problem(address: str, protocol: str, tls: Tls, timeout_s: float = 10.0) -> str | None:
    """Why TLS to ``address`` (``host:port``) fails, or None when it works, and also when
    the failure comes before TLS (refused, unreachable, timed out), which the caller's own
    call reports as it does for a plain-text server."""
    url = shown_url(address, protocol, tls)
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        context = tls.context("h2" if protocol == "grpc" else "http/1.1")
    except (ssl.SSLError, OSError) as e:
        return f"TLS to {url} cannot start: the CA, certificate or key file could not be used ({e})"
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout_s)
    except (OSError, ValueError):
        return None
    try:
        with context.wrap_socket(sock, server_hostname=host) as conn:
            if protocol == "grpc":
                conn.sendall(_H2_PREFACE)
            else:
                conn.sendall(f"GET /v2/health/live HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n".encode())
            if not conn.recv(1) and protocol == "grpc":
                # A gRPC server answers the preface with SETTINGS. One that hangs up without a
                # word after a good handshake is refusing this client (BoringSSL, in Triton's
                # gRPC, sends no alert for a missing or untrusted client certificate under TLS 1.3)
                return f"TLS to {url} failed: the server closed the connection right after the handshake{_client_hint(tls)}"
    except ssl.SSLCertVerificationError as e:
        return f"TLS to {url} failed: certificate verify failed: {e.verify_message}{_verify_hint(e.verify_code, host)}"
    except ssl.SSLError as e:
        return f"TLS to {url} failed: {_ssl_reason(e)}{_alert_hint(e)}"
    except TimeoutError:
        return None  # a hung server, which the caller's call reports
    except OSError as e:  # reset or closed in the handshake: no TLS server there
        return (f"TLS to {url} failed: the server ended the connection in the TLS handshake ({e}){_NOT_TLS}")
    finally:
        sock.close()
    return None


_NOT_TLS = (" (does the server speak TLS on that port? Triton's gRPC port needs --grpc-use-ssl=true; its HTTP "
            "port has no TLS of its own and needs a TLS proxy in front; for a plain-text server use grpc:// or "
            "http://)")


def _ssl_reason(e: ssl.SSLError) -> str:
    """OpenSSL's words, without the library's and the source line's tags."""
    text = str(e.args[1]) if len(e.args) > 1 else str(e)
    text = re.sub(r"\s*\(_ssl\.c:\d+\)$", "", re.sub(r"^\[[^\]]*\]\s*", "", text))
    return text or getattr(e, "reason", None) or type(e).__name__


def _client_hint(tls: Tls) -> str:
    if tls.cert is None:
        return " (it may want a client certificate: give --ssl-cert and --ssl-key)"
    return (" (it may not accept this client's certificate: it must be signed by a CA the server trusts, "
            "its --grpc-root-cert)")


def _verify_hint(code: int, host: str) -> str:
    if code in _UNKNOWN_CA:
        return " (--ssl-ca names the CA that signed the server's certificate)"
    if code == _EXPIRED:
        return " (the server's certificate has expired: the server needs a new one)"
    if code == _NOT_YET_VALID:
        return " (the server's certificate is not valid yet: check the clocks of both machines)"
    if code in _NAME_MISMATCH:
        return (f" (the server's certificate is not made out to {host}: use a host name or address that its "
                "subjectAltName lists)")
    return ""


def _alert_hint(e: ssl.SSLError) -> str:
    reason = (getattr(e, "reason", None) or "").upper()
    if "CERTIFICATE_REQUIRED" in reason:
        return " (the server asks for a client certificate: give --ssl-cert and --ssl-key)"
    if reason.endswith(("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN", "DECRYPT_ERROR")):
        return (" (the server did not accept this client's certificate: it must be signed by a CA the server "
                "trusts)")
    if reason.endswith(("HANDSHAKE_FAILURE", "NO_APPLICATION_PROTOCOL")):
        return " (the server and this client agree on no TLS version, cipher or application protocol)"
    if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST",
                  "UNEXPECTED_EOF_WHILE_READING"):
        return _NOT_TLS
    return ""
