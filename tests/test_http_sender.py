"""The load generator's own HTTP/1.1 client (loadgen._worker._HttpSender) against a peer on
127.0.0.1 that answers with prepared bytes: the framings a server may use (Content-Length,
chunked, responses split over many packets), errors, and connections that end early. The
real Triton server's answers are covered by the HTTP sweeps (test_sweep.py, test_faults.py)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import close_during_send

from analyzer_widgets.loadgen._worker import OutputCheck, PointJob, _HttpSender

OUTPUT = OutputCheck("y", "FP32", (1, 4))


def infer_body(shape: tuple[int, ...] = (1, 4), nbytes: int = 16) -> tuple[bytes, bytes]:
    """The JSON header of an inference response and the whole body (header + output bytes)."""
    header = json.dumps({"model_name": "m", "outputs": [
        {"name": "y", "datatype": "FP32", "shape": list(shape), "parameters": {"binary_data_size": nbytes}}]}).encode()
    return header, header + bytes(nbytes)


def ok_response(extra_headers: str = "", shape: tuple[int, ...] = (1, 4)) -> bytes:
    header, body = infer_body(shape, 4 * int(np.prod(shape)))
    return (f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nInference-Header-Content-Length: "
            f"{len(header)}\r\nContent-Length: {len(body)}\r\n{extra_headers}\r\n").encode() + body


def chunked_response(trailer: bytes = b"") -> bytes:
    header, body = infer_body()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:30], body[30:]))
    return (f"HTTP/1.1 200 OK\r\nInference-Header-Content-Length: {len(header)}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode() + chunks + b"0\r\n" + trailer + b"\r\n"


class Peer:
    """A TCP listener on 127.0.0.1 that reads each request whole and answers it with the next
    of its prepared responses, each sent in pieces of ``piece`` bytes."""

    def __init__(self, responses: list[bytes | None], piece: int = 0) -> None:
        self.responses = list(responses)
        self.piece = piece
        self.requests: list[bytes] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.responses:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                while self.responses:
                    request = self._read_request(conn)
                    if request is None:
                        break
                    self.requests.append(request)
                    response = self.responses.pop(0)
                    if response is None:  # hang up without answering
                        break
                    step = self.piece or len(response)
                    try:
                        for i in range(0, len(response), step):
                            conn.sendall(response[i:i + step])
                            if self.piece:
                                time.sleep(0.001)
                    except OSError:
                        break  # the client gave up on the answer (a timeout) and closed
                    if b"Connection: close" in response:
                        break

    @staticmethod
    def _read_request(conn: socket.socket) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            got = conn.recv(65536)
            if not got:
                return None
            data += got
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        while len(body) < length:
            body += conn.recv(65536)
        return head + b"\r\n\r\n" + body

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def peer_factory() -> Iterator:
    peers: list[Peer] = []

    def make(responses: list[bytes | None], piece: int = 0) -> Peer:
        peers.append(Peer(responses, piece))
        return peers[-1]

    yield make
    for p in peers:
        p.close()


def sender(port: int, headers: dict[str, str] | None = None, output: OutputCheck = OUTPUT,
           timeout_s: float = 5.0) -> _HttpSender:
    job = PointJob(address=f"127.0.0.1:{port}", protocol="http", model="m", version="",
                   inputs={"x": np.ones((1, 4), dtype=np.float32)}, input_datatypes={"x": "FP32"},
                   outputs=(output,), concurrency=1, timeout_s=timeout_s, headers=headers or {})
    return _HttpSender(job)


def test_requests_reuse_one_connection_and_carry_the_body_and_headers(peer_factory) -> None:
    peer = peer_factory([ok_response(), ok_response(), ok_response()])
    s = sender(peer.port, {"Authorization": "Bearer t"})
    assert [s.send() for _ in range(3)] == [None, None, None]
    s.close()
    assert peer.connections == 1
    request = peer.requests[0]
    assert request.startswith(b"POST /v2/models/m/infer HTTP/1.1\r\n")
    assert b"\r\nAuthorization: Bearer t\r\n" in request and b"Inference-Header-Content-Length: " in request
    assert request.endswith(np.ones((1, 4), dtype=np.float32).tobytes())


def test_the_timeout_bounds_the_whole_response_not_each_read(peer_factory) -> None:
    # a byte every millisecond or more: each read gets data in time, the whole takes longer
    peer = peer_factory([ok_response(), ok_response()], piece=1)
    s = sender(peer.port, timeout_s=0.1)
    started = time.monotonic()
    assert s.send() == "TimeoutError: no whole response within 0.1 s"
    elapsed = time.monotonic() - started
    s.close()
    assert elapsed < 0.5, elapsed  # the response alone takes 0.2 s or more


def test_a_response_arriving_in_small_pieces_is_read_whole(peer_factory) -> None:
    peer = peer_factory([ok_response(), ok_response()], piece=5)
    s = sender(peer.port)
    assert s.send() is None and s.send() is None
    s.close()


def test_user_headers_never_repeat_the_framing_headers(peer_factory) -> None:
    peer = peer_factory([ok_response()])
    s = sender(peer.port, {"content-length": "5", "HOST": "elsewhere", "X-Key": "k"})
    assert s.send() is None
    s.close()
    head = peer.requests[0].split(b"\r\n\r\n")[0].lower()
    assert head.count(b"\r\ncontent-length:") == 1 and head.count(b"\r\nhost:") == 1
    assert b"\r\nhost: 127.0.0.1:" in head and b"\r\nx-key: k" in head


def test_a_response_larger_than_the_first_buffer_is_read_whole_and_the_next_one_too(peer_factory) -> None:
    big = (1, 40000)  # 160 kB of outputs: past the 64 KiB the buffer starts with
    peer = peer_factory([ok_response(shape=big), ok_response(shape=big)], piece=50000)
    s = sender(peer.port, output=OutputCheck("y", "FP32", big))
    assert s.send() is None and s.send() is None
    s.close()
    assert peer.connections == 1


def test_a_chunked_response_with_a_trailer_leaves_the_connection_in_step(peer_factory) -> None:
    peer = peer_factory([chunked_response(trailer=b"X-Checksum: 1\r\n"), ok_response()], piece=4)
    s = sender(peer.port)
    assert s.send() is None
    assert s.send() is None
    s.close()
    assert peer.connections == 1


def test_a_chunked_response_is_decoded(peer_factory) -> None:
    peer = peer_factory([chunked_response(), ok_response()], piece=9)
    s = sender(peer.port)
    assert s.send() is None
    assert s.send() is None  # the connection is still in step after the chunked body
    s.close()
    assert peer.connections == 1


def test_an_error_status_is_reported_with_the_servers_message(peer_factory) -> None:
    body = b'{"error":"unexpected shape for input x"}'
    peer = peer_factory([b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body), ok_response()])
    s = sender(peer.port)
    assert s.send() == 'HTTP 400: {"error":"unexpected shape for input x"}'
    assert s.send() is None
    s.close()


def test_a_response_with_the_wrong_outputs_fails_the_check(peer_factory) -> None:
    header, body = infer_body(shape=(1, 0), nbytes=0)
    response = (f"HTTP/1.1 200 OK\r\nInference-Header-Content-Length: {len(header)}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    peer = peer_factory([response])
    s = sender(peer.port)
    assert s.send() == "output y has shape [1, 0], expected [1, 4]"
    s.close()


def test_a_connection_closed_by_the_server_fails_that_request_and_the_next_opens_another(peer_factory) -> None:
    peer = peer_factory([None, ok_response("Connection: close\r\n"), ok_response()])
    s = sender(peer.port)
    assert s.send() == "ConnectionError: the server closed the connection"
    assert s.send() is None  # on a new connection, which the server then closes
    assert s.send() is None  # so this one opens a third
    s.close()
    assert peer.connections == 3


def test_close_ends_a_request_waiting_for_its_answer_at_once(peer_factory) -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        assert close_during_send(sender(listener.getsockname()[1]), after_s=0.2) is not None
    finally:
        listener.close()
