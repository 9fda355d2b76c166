"""The load generator's own gRPC client (loadgen._http2, loadgen._worker._GrpcSender).

Its HPACK decoder is checked against the `hpack` package's encoder (Huffman strings, the
dynamic table, evictions, size updates), and its HTTP/2 against a peer built on the `h2`
package, an independent implementation acting as the server: flow control with small
windows, CONTINUATION and padding, PING, GOAWAY, RST_STREAM, trailers-only errors, a
server that hangs or hangs up. The real Triton server's gRPC answers are covered by every
gRPC sweep of the suite (test_sweep.py, test_faults.py, ...).
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hpack
import numpy as np
import pytest
from conftest import close_during_send
from h2.settings import SettingCodes
from tritonclient.grpc import service_pb2

from analyzer_widgets.loadgen import _http2
from analyzer_widgets.loadgen._worker import GRPC_INFER, OutputCheck, PointJob, _GrpcSender, infer_request_bytes

OUTPUT = OutputCheck("y", "FP32", (1, 4))


# -- HPACK -----------------------------------------------------------------------------------

def test_the_static_table_is_rfc_7541s() -> None:
    theirs = [(n.decode(), v.decode()) for n, v in hpack.table.HeaderTable.STATIC_TABLE]
    assert list(_http2.STATIC_TABLE) == theirs


def test_huffman_strings_decode_to_what_was_encoded() -> None:
    rng = random.Random(7)
    encoder = hpack.huffman.HuffmanEncoder(hpack.huffman_constants.REQUEST_CODES,
                                           hpack.huffman_constants.REQUEST_CODES_LENGTH)
    samples = [b"", b"application/grpc", b"0", bytes(range(256))]
    samples += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60))) for _ in range(200)]
    for raw in samples:
        assert _http2.huffman_decode(encoder.encode(raw)) == raw


def test_a_huffman_string_with_bad_padding_is_refused() -> None:
    with pytest.raises(_http2.HpackError, match="padding"):
        _http2.huffman_decode(b"\x00")  # five 0 bits decode '0', then three 0 bits: not EOS padding


def test_header_blocks_decode_through_the_dynamic_table_and_its_evictions() -> None:
    rng = random.Random(3)
    encoder = hpack.Encoder()
    encoder.header_table_size = 256  # small: entries are evicted all the time (and a size update is sent)
    ours = _http2.HpackDecoder()
    for i in range(300):
        fields = [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", str(i % 3)),
                  (f"x-key-{rng.randrange(12)}", "v" * rng.randrange(0, 90))]
        block = encoder.encode(fields, huffman=bool(i % 2))
        assert ours.decode(block) == fields


def test_integers_round_trip_across_their_prefix() -> None:
    decoder = _http2.HpackDecoder()
    for prefix in (4, 5, 6, 7):
        for value in (0, 1, (1 << prefix) - 2, (1 << prefix) - 1, 1 << prefix, 300, 1 << 20):
            assert decoder._int(_http2.encode_int(value, prefix), 0, prefix) == (value, len(_http2.encode_int(value, prefix)))


def test_our_request_block_decodes_as_the_fields_we_meant() -> None:
    block = b"".join(_http2.encode_literal(n, v) for n, v in [(":path", GRPC_INFER), ("te", "trailers")])
    assert hpack.Decoder().decode(block) == [(":path", GRPC_INFER), ("te", "trailers")]


def test_an_index_past_the_table_is_a_compression_error() -> None:
    with pytest.raises(_http2.HpackError, match="index 70"):
        _http2.HpackDecoder().decode(_http2.encode_int(70, 7, 0x80))


# -- HTTP/2 against an h2 server -----------------------------------------------------------------

def infer_response(shape: tuple[int, ...] = (1, 4)) -> bytes:
    response = service_pb2.ModelInferResponse(model_name="m")
    out = response.outputs.add()
    out.name, out.datatype = "y", "FP32"
    out.shape.extend(shape)
    response.raw_output_contents.append(bytes(4 * int(np.prod(shape))))
    return _http2.grpc_message(response.SerializeToString())


Respond = Callable[["H2Peer", h2.connection.H2Connection, int], None]


def answer_ok(peer: H2Peer, conn: h2.connection.H2Connection, stream: int, pad: int = 0) -> None:
    conn.send_headers(stream, [(":status", "200"), ("content-type", "application/grpc")])
    conn.send_data(stream, infer_response(), pad_length=pad or None)
    conn.send_headers(stream, [("grpc-status", "0")], end_stream=True)


class H2Peer:
    """A gRPC server of sorts on 127.0.0.1, built on h2: each request read whole is handed
    to the next of ``responders`` (then to ``answer_ok``)."""

    def __init__(self, responders: list[Respond], settings: dict[int, int] | None = None) -> None:
        self.responders = list(responders)
        self.settings = settings or {}
        self.requests: list[tuple[list[tuple[str, str]], bytes]] = []
        self.connections = 0
        self.ping_acks = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        if self.settings:
            conn.update_settings(self.settings)
        sock.sendall(conn.data_to_send())
        headers: dict[int, list[tuple[str, str]]] = {}
        bodies: dict[int, bytearray] = {}
        with sock:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                try:
                    events = conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    return  # what the client sent after our GOAWAY (a SETTINGS ack): h2 refuses it
                for event in events:
                    if isinstance(event, h2.events.RequestReceived):
                        headers[event.stream_id] = list(event.headers)
                        bodies[event.stream_id] = bytearray()
                    elif isinstance(event, h2.events.DataReceived):
                        bodies[event.stream_id] += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.PingAckReceived):
                        self.ping_acks += 1
                    elif isinstance(event, h2.events.StreamEnded):
                        self.requests.append((headers[event.stream_id], bytes(bodies[event.stream_id])))
                        respond = self.responders.pop(0) if self.responders else answer_ok
                        answer = respond(self, conn, event.stream_id)
                        if answer == "hang up" or isinstance(answer, bytes):  # bytes: raw frames, then hang up
                            self._hang_up(sock, conn.data_to_send() + (answer if isinstance(answer, bytes) else b""))
                            return
                try:
                    sock.sendall(conn.data_to_send())
                except OSError:
                    return

    @staticmethod
    def _hang_up(sock: socket.socket, last: bytes) -> None:
        """Send ``last``, then close the way a server does: our side first, then reading
        what the client still sends until it closes too (closing with unread bytes would
        reset the connection, and the client could lose ``last``)."""
        sock.sendall(last)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(2.0)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def peer_factory() -> Iterator[Callable[..., H2Peer]]:
    peers: list[H2Peer] = []

    def make(responders: list[Respond] | None = None, settings: dict[int, int] | None = None) -> H2Peer:
        peers.append(H2Peer(responders or [], settings))
        return peers[-1]

    yield make
    for p in peers:
        p.close()


def sender(port: int, headers: dict[str, str] | None = None, values: int = 4, timeout_s: float = 5.0) -> _GrpcSender:
    return _GrpcSender(job(port, headers, values, timeout_s))


def job(port: int, headers: dict[str, str] | None = None, values: int = 4, timeout_s: float = 5.0) -> PointJob:
    return PointJob(address=f"127.0.0.1:{port}", protocol="grpc", model="m", version="",
                    inputs={"x": np.arange(values, dtype=np.float32).reshape(1, values)}, input_datatypes={"x": "FP32"},
                    outputs=(OUTPUT,), concurrency=1, timeout_s=timeout_s, headers=headers or {})


def test_calls_share_one_connection_and_carry_the_request_and_headers(peer_factory) -> None:
    peer = peer_factory()
    s = sender(peer.port, {"Authorization": "Bearer t", "X-Trace": "1"})
    assert [s.send() for _ in range(20)] == [None] * 20  # h2 Huffman-codes and indexes its headers
    s.close()
    assert peer.connections == 1
    headers, body = peer.requests[0]
    fields = dict(headers)
    assert fields[":method"] == "POST" and fields[":path"] == GRPC_INFER and fields["te"] == "trailers"
    assert fields["content-type"] == "application/grpc"
    assert fields["authorization"] == "Bearer t" and fields["x-trace"] == "1"  # HTTP/2 names are lower case
    assert body == _http2.grpc_message(infer_request_bytes(job(peer.port)))


def test_a_request_larger_than_the_servers_windows_waits_for_them_and_arrives_whole(peer_factory) -> None:
    # a 1000-byte stream window and 16 KiB frames: a 160 kB request goes in many rounds
    peer = peer_factory(settings={SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    s = sender(peer.port, values=40000)
    assert s.send() is None and s.send() is None
    s.close()
    assert peer.connections == 1
    assert [body for _, body in peer.requests] == [_http2.grpc_message(infer_request_bytes(job(peer.port, values=40000)))] * 2


def test_padded_data_and_headers_split_into_continuation_frames_are_read(peer_factory) -> None:
    def padded_and_long(peer: H2Peer, conn: h2.connection.H2Connection, stream: int) -> None:
        # 40 kB of header: more than one 16 KiB frame, so h2 sends HEADERS + CONTINUATION
        conn.send_headers(stream, [(":status", "200"), ("content-type", "application/grpc"), ("x-big", "b" * 40000)])
        conn.send_data(stream, infer_response(), pad_length=100)
        conn.send_headers(stream, [("grpc-status", "0")], end_stream=True)

    peer = peer_factory([padded_and_long])
    s = sender(peer.port)
    assert s.send() is None and s.send() is None
    s.close()


def test_an_error_status_gives_its_name_and_message_and_the_connection_goes_on(peer_factory) -> None:
    def trailers_only(peer: H2Peer, conn: h2.connection.H2Connection, stream: int) -> None:
        conn.send_headers(stream, [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "3"),
                                   ("grpc-message", "unexpected%20shape%20for%20input%20%27x%27")], end_stream=True)

    peer = peer_factory([trailers_only])
    s = sender(peer.port)
    assert s.send() == "INVALID_ARGUMENT: unexpected shape for input 'x'"
    assert s.send() is None
    s.close()
    assert peer.connections == 1


def test_a_reset_stream_fails_that_call_only(peer_factory) -> None:
    def reset(peer: H2Peer, conn: h2.connection.H2Connection, stream: int) -> None:
        conn.reset_stream(stream, error_code=2)

    peer = peer_factory([reset])
    s = sender(peer.port)
    assert s.send() == "the server reset the stream (INTERNAL_ERROR)"
    assert s.send() is None
    s.close()
    assert peer.connections == 1


def refuse_stream(peer: H2Peer, conn: h2.connection.H2Connection, stream: int) -> None:
    conn.reset_stream(stream, error_code=7)  # REFUSED_STREAM: not processed


def go_away_before(peer: H2Peer, conn: h2.connection.H2Connection, stream: int) -> str:
    """A GOAWAY whose last stream id is below this call's: the server did not take it."""
    conn.close_connection(error_code=0, last_stream_id=max(stream - 2, 0), additional_data=b"shutting down")
    return "hang up"


@pytest.mark.parametrize("refusal", [refuse_stream, go_away_before], ids=["REFUSED_STREAM", "GOAWAY"])
def test_a_request_the_server_refused_unprocessed_is_sent_again_on_a_new_connection(peer_factory, refusal) -> None:
    peer = peer_factory([refusal])
    s = sender(peer.port)
    assert s.send() is None  # one request as the caller sees it: it succeeded
    assert s.send() is None
    s.close()
    assert peer.connections == 2
    assert len(peer.requests) == 3 and peer.requests[0] == peer.requests[1]  # the same bytes again


def test_a_request_refused_again_fails_naming_the_refusal(peer_factory) -> None:
    peer = peer_factory([go_away_before, refuse_stream])
    s = sender(peer.port)
    assert s.send() == "the server refused the stream (REFUSED_STREAM) before it took the call; sent 2 times"
    assert s.send() is None  # each refusal left its connection: this is the third
    s.close()
    assert peer.connections == 3 and len(peer.requests) == 3


def test_the_timeout_bounds_the_whole_send_a_resend_included(peer_factory) -> None:
    def refuse_late(peer: H2Peer, conn: h2.connection.H2Connection, stream: int) -> str:
        time.sleep(0.6)
        return go_away_before(peer, conn, stream)

    peer = peer_factory([refuse_late, lambda peer, conn, stream: None])  # the resend is never answered
    s = sender(peer.port, timeout_s=1.0)
    started = time.monotonic()
    assert s.send() == "DEADLINE_EXCEEDED: no response within 1 s"
    elapsed = time.monotonic() - started
    s.close()
    assert peer.connections == 2 and len(peer.requests) == 2  # it was sent again, with what time was left
    assert elapsed < 1.4, elapsed  # not 0.6 s + a fresh 1 s


def test_a_goaway_after_an_answer_sends_the_next_call_to_a_new_connection(peer_factory) -> None:
    def answer_then_go_away(peer: H2Peer, conn: h2.connection.H2Connection, stream: int) -> None:
        answer_ok(peer, conn, stream)
        conn.close_connection(error_code=0, last_stream_id=stream)

    peer = peer_factory([answer_then_go_away])
    s = sender(peer.port)
    assert s.send() is None
    time.sleep(0.2)  # the GOAWAY arrives while the connection is idle
    assert s.send() is None  # no error: seen before the call, which went on a new connection
    s.close()
    assert peer.connections == 2


def test_a_short_reset_frame_fails_at_once_not_at_the_deadline(peer_factory) -> None:
    def short_reset(peer: H2Peer, conn: h2.connection.H2Connection, stream: int) -> bytes:
        return _http2.frame(_http2.RST_STREAM, 0, stream, b"\x00\x00\x08")

    peer = peer_factory([short_reset])
    s = sender(peer.port, timeout_s=10)
    started = time.monotonic()
    assert s.send() == "the server sent a RST_STREAM of 3 bytes, not 4"
    assert time.monotonic() - started < 2
    s.close()


def raw_server(reply: bytes, *, after_request: bool, hold_s: float) -> socket.socket:
    """A listener on 127.0.0.1 that sends ``reply`` on its first connection (once the
    client's first bytes came, with ``after_request``) and holds it open ``hold_s``: a peer
    that is not the HTTP/2 server h2 would be."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            if after_request:
                conn.recv(65536)
            conn.sendall(reply)
            time.sleep(hold_s)

    threading.Thread(target=serve, daemon=True).start()
    return listener


def test_a_maximum_frame_size_below_the_minimum_is_refused_not_looped_on() -> None:
    listener = raw_server(_http2.frame(_http2.SETTINGS, 0, 0, struct.pack(">HI", _http2.SETTINGS_MAX_FRAME_SIZE, 0)),
                          after_request=False, hold_s=1.0)
    s = sender(listener.getsockname()[1], timeout_s=1.0)
    time.sleep(0.2)  # the SETTINGS arrive before the call's DATA is framed
    assert s.send() == "the server set a maximum frame size of 0, outside 16384..2^24-1"
    s.close()
    listener.close()


def test_an_informational_response_before_the_answer_is_skipped(peer_factory) -> None:
    def early_hints_first(peer: H2Peer, conn: h2.connection.H2Connection, stream: int) -> None:
        conn.send_headers(stream, [(":status", "103"), ("link", "</x>")])
        answer_ok(peer, conn, stream)

    peer = peer_factory([early_hints_first])
    s = sender(peer.port)
    assert s.send() is None
    s.close()


def test_connection_specific_user_headers_are_left_out_and_a_smaller_table_is_acknowledged(peer_factory) -> None:
    # h2 would refuse the request as malformed if Connection or Host went on the wire
    peer = peer_factory(settings={SettingCodes.HEADER_TABLE_SIZE: 0})
    s = sender(peer.port, {"Connection": "keep-alive", "Host": "elsewhere", "x-key": "k"})
    assert s.send() is None and s.send() is None
    conn = s._local.conn
    assert conn._peer_table_size == 0 and conn._table_update == b""  # heard, and the update went out
    s.close()
    fields = dict(peer.requests[-1][0])
    assert "connection" not in fields and "host" not in fields and fields["x-key"] == "k"


@pytest.mark.parametrize(("raw", "message"), [
    (_http2.frame(_http2.GOAWAY, 0, 0, b"\x00\x00"), "the server sent a GOAWAY of 2 bytes, under 8"),
    (_http2.frame(_http2.PING, 0, 0, b"1234"), "the server sent a PING of 4 bytes, not 8"),
    (_http2.frame(_http2.WINDOW_UPDATE, 0, 0, b"\x00\x00\x00\x00"), "the server sent a WINDOW_UPDATE of 0"),
    (_http2.frame(_http2.WINDOW_UPDATE, 0, 0, struct.pack(">I", _http2.MAX_WINDOW)),
     "the server's WINDOW_UPDATEs took the connection window past 2^31-1"),
    (_http2.frame(_http2.DATA, 0, 0, b"x"), "the server sent a DATA on stream 0"),
    (_http2.frame(_http2.PING, 0, 1, bytes(8)), "the server sent a PING on stream 1"),
])
def test_frames_breaking_the_rules_of_their_type_drop_the_connection(peer_factory, raw: bytes, message: str) -> None:
    peer = peer_factory([lambda peer, conn, stream: raw])
    s = sender(peer.port)
    assert s.send() == message
    assert s.send() is None  # on a new connection
    s.close()
    assert peer.connections == 2


def test_a_ping_from_the_server_is_answered(peer_factory) -> None:
    def ping_first(peer: H2Peer, conn: h2.connection.H2Connection, stream: int) -> None:
        conn.ping(b"12345678")
        answer_ok(peer, conn, stream)

    peer = peer_factory([ping_first])
    s = sender(peer.port)
    assert s.send() is None and s.send() is None  # the ack is read on the second call's turn
    s.close()
    deadline = time.monotonic() + 2
    while peer.ping_acks < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert peer.ping_acks == 1


def test_a_server_that_never_answers_fails_the_call_at_its_deadline(peer_factory) -> None:
    peer = peer_factory([lambda peer, conn, stream: None])
    s = sender(peer.port, timeout_s=0.5)
    started = time.monotonic()
    assert s.send() == "DEADLINE_EXCEEDED: no response within 0.5 s"
    assert time.monotonic() - started < 2.0
    assert s.send() is None  # on a new connection
    s.close()
    assert peer.connections == 2


def test_a_connection_the_server_closed_while_idle_is_replaced_without_an_error(peer_factory) -> None:
    def answer_then_hang_up(peer: H2Peer, conn: h2.connection.H2Connection, stream: int) -> str:
        answer_ok(peer, conn, stream)
        return "hang up"

    peer = peer_factory([answer_then_hang_up])
    s = sender(peer.port)
    assert s.send() is None
    time.sleep(0.2)
    assert s.send() is None
    s.close()
    assert peer.connections == 2


def test_a_server_hanging_up_mid_call_fails_that_call_and_the_next_reconnects(peer_factory) -> None:
    def half_then_hang_up(peer: H2Peer, conn: h2.connection.H2Connection, stream: int) -> str:
        conn.send_headers(stream, [(":status", "200"), ("content-type", "application/grpc")])
        return "hang up"

    peer = peer_factory([half_then_hang_up])
    s = sender(peer.port)
    assert s.send() == "the server closed the connection"
    assert s.send() is None
    s.close()
    assert peer.connections == 2


def test_wrong_outputs_in_a_successful_answer_fail_the_check(peer_factory) -> None:
    def empty(peer: H2Peer, conn: h2.connection.H2Connection, stream: int) -> None:
        conn.send_headers(stream, [(":status", "200"), ("content-type", "application/grpc")])
        conn.send_data(stream, infer_response((1, 0)))
        conn.send_headers(stream, [("grpc-status", "0")], end_stream=True)

    peer = peer_factory([empty])
    s = sender(peer.port)
    assert s.send() == "output y has shape [1, 0], expected [1, 4]"
    s.close()


def test_an_http_1_server_is_named_as_such() -> None:
    listener = raw_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                          after_request=True, hold_s=0.5)
    s = sender(listener.getsockname()[1])
    assert s.send() == "the server answered in HTTP/1.1, not gRPC: is this its HTTP port?"
    s.close()
    listener.close()


def test_close_ends_a_call_waiting_for_its_answer_at_once(peer_factory) -> None:
    peer = peer_factory([lambda peer, conn, stream: None])
    assert close_during_send(sender(peer.port, timeout_s=30), after_s=0.3) is not None
