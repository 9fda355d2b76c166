"""Just the HTTP/2 and HPACK (RFC 9113, RFC 7541) that a unary gRPC call needs, on a plain
blocking socket: the load generator's gRPC client.

Why not grpcio: its blocking call costs several times this client's CPU per call and adds
to every request's latency over perf_analyzer's C++ client, which at low concurrency on a
fast model is a large share of the throughput; none of its channel options help
(benchmarks/grpc_call_cost.py, benchmarks/client_cost.py; the figures in docs/benchmarks.md). A connection here carries one call at a time (one per
request slot, as the HTTP/1.1 sender keeps one socket per slot), so a call is: one sendall
of HEADERS and DATA frames built from bytes prepared once, then frames read until the
stream's trailers. What a call needs to be correct against any HTTP/2 peer (a proxy in
front of a remote server too) is all here: flow control both ways, SETTINGS, PING, GOAWAY,
RST_STREAM, CONTINUATION, padding, and an HPACK decoder with its dynamic table and Huffman
strings. What a unary client never needs is not: server push (refused in our SETTINGS),
priorities, more than one open stream. TLS (``grpcs://``) is the ssl module's: the socket
is wrapped before the first byte is sent, so nothing goes out in clear text.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from urllib.parse import unquote

# -- HPACK ----------------------------------------------------------------------------------

STATIC_TABLE: tuple[tuple[str, str], ...] = (
    (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"), (":path", "/index.html"),
    (":scheme", "http"), (":scheme", "https"), (":status", "200"), (":status", "204"), (":status", "206"),
    (":status", "304"), (":status", "400"), (":status", "404"), (":status", "500"), ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""), ("accept", ""),
    ("access-control-allow-origin", ""), ("age", ""), ("allow", ""), ("authorization", ""),
    ("cache-control", ""), ("content-disposition", ""), ("content-encoding", ""), ("content-language", ""),
    ("content-length", ""), ("content-location", ""), ("content-range", ""), ("content-type", ""),
    ("cookie", ""), ("date", ""), ("etag", ""), ("expect", ""), ("expires", ""), ("from", ""), ("host", ""),
    ("if-match", ""), ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""),
    ("if-unmodified-since", ""), ("last-modified", ""), ("link", ""), ("location", ""), ("max-forwards", ""),
    ("proxy-authenticate", ""), ("proxy-authorization", ""), ("range", ""), ("referer", ""), ("refresh", ""),
    ("retry-after", ""), ("server", ""), ("set-cookie", ""), ("strict-transport-security", ""),
    ("transfer-encoding", ""), ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", ""),
)

# RFC 7541 Appendix B is a canonical Huffman code: the code lengths of symbols 0..256 (256 is
# EOS) define it whole, codes assigned in order of (length, symbol).
_HUFFMAN_LENGTHS = bytes((
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28,
    28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7,
    8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19,
    13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13,
    28, 20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21,
    22, 23, 22, 23, 23, 24, 22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23,
    22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25,
    25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
))
_EOS = 256


def _huffman_codes() -> dict[tuple[int, int], int]:
    """(length, code) -> symbol, for the canonical code of _HUFFMAN_LENGTHS."""
    order = sorted(range(257), key=lambda s: (_HUFFMAN_LENGTHS[s], s))
    codes: dict[tuple[int, int], int] = {}
    code, length = -1, _HUFFMAN_LENGTHS[order[0]]
    for symbol in order:
        code = (code + 1) << (_HUFFMAN_LENGTHS[symbol] - length)
        length = _HUFFMAN_LENGTHS[symbol]
        codes[(length, code)] = symbol
    return codes


_HUFFMAN = _huffman_codes()


class HpackError(ValueError):
    """A header block that cannot be decoded: the connection cannot go on (COMPRESSION_ERROR)."""


def huffman_decode(data: bytes) -> bytes:
    out = bytearray()
    code = length = 0
    for byte in data:
        for shift in range(7, -1, -1):
            code = (code << 1) | ((byte >> shift) & 1)
            length += 1
            symbol = _HUFFMAN.get((length, code))
            if symbol is not None:
                if symbol == _EOS:
                    raise HpackError("a Huffman string holds EOS")
                out.append(symbol)
                code = length = 0
            elif length > 30:
                raise HpackError("a Huffman string holds an unknown code")
    # what is left must be padding: fewer than 8 bits, all ones (the start of EOS)
    if length > 7 or code != (1 << length) - 1:
        raise HpackError("a Huffman string ends with bad padding")
    return bytes(out)


def encode_int(value: int, prefix_bits: int, flags: int = 0) -> bytes:
    """An HPACK integer (RFC 7541 5.1) with ``flags`` in the bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((flags | value,))
    out = bytearray((flags | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_string(text: str) -> bytes:
    """A string literal, never Huffman-coded (peers must accept both; ours are short)."""
    raw = text.encode("latin-1")
    return encode_int(len(raw), 7) + raw


def encode_literal(name: str, value: str) -> bytes:
    """A header field as a literal not added to the peer's dynamic table (RFC 7541 6.2.2),
    its name by static index where the static table has it: the block is then the same
    bytes on every request, so it is built once."""
    index = next((i for i, (n, _) in enumerate(STATIC_TABLE, 1) if n == name), 0)
    head = encode_int(index, 4) if index else b"\x00" + encode_string(name)
    return head + encode_string(value)


class HpackDecoder:
    """The decoding side of one connection's header compression. Every header block the
    peer sends must pass through it in order, whatever stream it belongs to: the dynamic
    table is shared by them all."""

    def __init__(self, max_table_size: int = 4096) -> None:
        self._limit = max_table_size  # what our SETTINGS_HEADER_TABLE_SIZE allows (the default)
        self._max = max_table_size
        self._table: list[tuple[str, str]] = []  # newest first
        self._size = 0

    def _entry(self, index: int) -> tuple[str, str]:
        if 1 <= index <= len(STATIC_TABLE):
            return STATIC_TABLE[index - 1]
        dynamic = index - len(STATIC_TABLE) - 1
        if 0 <= dynamic < len(self._table):
            return self._table[dynamic]
        raise HpackError(f"header index {index} is not in the table")

    def _evict(self) -> None:
        while self._size > self._max:
            name, value = self._table.pop()
            self._size -= len(name) + len(value) + 32

    def _add(self, name: str, value: str) -> None:
        self._table.insert(0, (name, value))
        self._size += len(name) + len(value) + 32
        self._evict()

    @staticmethod
    def _int(block: bytes, pos: int, prefix_bits: int) -> tuple[int, int]:
        if pos >= len(block):
            raise HpackError("a header block ends inside an integer")
        limit = (1 << prefix_bits) - 1
        value = block[pos] & limit
        pos += 1
        if value < limit:
            return value, pos
        shift = 0
        while True:
            if pos >= len(block):
                raise HpackError("a header block ends inside an integer")
            byte = block[pos]
            pos += 1
            value += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value, pos
            if shift > 28:
                raise HpackError("a header block holds an integer too large")

    def _string(self, block: bytes, pos: int) -> tuple[str, int]:
        if pos >= len(block):
            raise HpackError("a header block ends before a string")
        huffman = block[pos] & 0x80
        length, pos = self._int(block, pos, 7)
        if pos + length > len(block):
            raise HpackError("a header block ends inside a string")
        raw = block[pos:pos + length]
        return (huffman_decode(raw) if huffman else raw).decode("latin-1"), pos + length

    def decode(self, block: bytes) -> list[tuple[str, str]]:
        fields: list[tuple[str, str]] = []
        pos = 0
        while pos < len(block):
            byte = block[pos]
            if byte & 0x80:  # indexed field
                index, pos = self._int(block, pos, 7)
                fields.append(self._entry(index))
                continue
            if byte & 0xE0 == 0x20:  # dynamic table size update
                size, pos = self._int(block, pos, 5)
                if size > self._limit:
                    raise HpackError(f"the peer set its table to {size} bytes, above our {self._limit}")
                self._max = size
                self._evict()
                continue
            indexing = bool(byte & 0x40)
            index, pos = self._int(block, pos, 6 if indexing else 4)
            if index:
                name = self._entry(index)[0]
            else:
                name, pos = self._string(block, pos)
            value, pos = self._string(block, pos)
            if indexing:
                self._add(name, value)
            fields.append((name, value))
        return fields


# -- HTTP/2 frames --------------------------------------------------------------------------

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
SETTINGS_HEADER_TABLE_SIZE, SETTINGS_ENABLE_PUSH, SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE = 1, 2, 4, 5
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_WINDOW = (1 << 31) - 1
DEFAULT_WINDOW = 65535
DEFAULT_MAX_FRAME = 16384  # what we accept: we never raise SETTINGS_MAX_FRAME_SIZE
MAX_STREAM_ID = (1 << 31) - 1
IDLE_CHECK_S = 0.005  # a connection unused this long is checked for frames before a call
_FRAME_HEADER = struct.Struct(">IBI")  # (length << 8 | type), flags, stream id

ERROR_CODES = (
    "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT", "STREAM_CLOSED",
    "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
)
REFUSED_STREAM = ERROR_CODES.index("REFUSED_STREAM")
GRPC_STATUS = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
    "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
)


_FIXED_SIZE = {PRIORITY: 5, RST_STREAM: 4, PING: 8, WINDOW_UPDATE: 4}
_FRAME_NAMES = ("DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING", "GOAWAY",
                "WINDOW_UPDATE", "CONTINUATION")

# connection-specific fields, malformed in HTTP/2 (RFC 9113 8.2.2); Host is :authority there
CONNECTION_HEADERS = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host"})


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return _FRAME_HEADER.pack(len(payload) << 8 | kind, flags, stream) + payload


def error_name(code: int) -> str:
    return ERROR_CODES[code] if code < len(ERROR_CODES) else f"error code {code}"


class ConnectionFailed(Exception):
    """The connection cannot carry another call (closed, GOAWAY, a protocol error, a
    timeout): the caller drops it and opens a new one for the next call."""


class Refused(ConnectionFailed):
    """The server refused the call before processing any of it (a GOAWAY whose last
    stream id is below the call's, or a stream reset with REFUSED_STREAM): RFC 9113
    section 8.7 makes it safe to send again, on a new connection."""


class CallFailed(Exception):
    """This call failed, its connection is fine (a gRPC status, a reset stream)."""


class _Stream:
    """What one call has received so far."""

    def __init__(self, stream_id: int, window: int) -> None:
        self.id = stream_id
        self.window = window  # how much request data the peer lets us send on it
        self.headers: list[tuple[str, str]] | None = None
        self.trailers: list[tuple[str, str]] | None = None
        self.data: list[bytes] = []
        self.closed = False  # the peer's half: END_STREAM or RST_STREAM seen
        self.reset: int | None = None

    def informational(self, fields: list[tuple[str, str]]) -> bool:
        """Whether ``fields`` are a 1xx response (103 Early Hints from a proxy, say) before
        the real one: skipped."""
        return self.headers is None and dict(fields).get(":status", "").startswith("1")


class GrpcConnection:
    """One HTTP/2 connection that makes unary gRPC calls, one at a time.

    ``call(message)`` sends one length-prefixed gRPC message and returns the response's
    message bytes (prefix removed), or raises CallFailed (the call failed, the connection
    lives on) or ConnectionFailed (drop this connection)."""

    def __init__(self, address: tuple[str, int], authority: str, path: str,
                 metadata: dict[str, str], timeout_s: float, connect_timeout_s: float | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._timeout = timeout_s
        self.sock = socket.create_connection(address, timeout=connect_timeout_s or timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:  # the handshake, within the connect's timeout; it closes the socket if it fails
            self.sock = ssl_context.wrap_socket(self.sock, server_hostname=address[0])
        self.sock.settimeout(timeout_s)
        scheme = "http" if ssl_context is None else "https"
        fields = [(":method", "POST"), (":scheme", scheme), (":path", path), (":authority", authority),
                  ("content-type", "application/grpc"), ("te", "trailers"), ("user-agent", "analyzer-widgets")]
        # HTTP/2 field names are lower case; grpc-* and pseudo-headers are ours to send
        fields += [(k.lower(), v) for k, v in metadata.items()
                   if not k.startswith(":") and k.lower() not in {name for name, _ in fields}
                   and k.lower() not in CONNECTION_HEADERS]
        self._block = b"".join(b"\x83" if (n, v) == (":method", "POST") else b"\x86" if (n, v) == (":scheme", "http")
                               else encode_literal(n, v) for n, v in fields)
        self._decoder = HpackDecoder()
        self._next_stream = 1
        self._send_window = DEFAULT_WINDOW  # connection-level, for our DATA
        self._peer_initial_window = DEFAULT_WINDOW
        self._peer_max_frame = DEFAULT_MAX_FRAME
        self._peer_table_size = 4096
        self._table_update = b""  # a dynamic table size update owed to the peer's decoder
        self._received = 0  # DATA bytes taken since our last connection WINDOW_UPDATE
        self._stream: _Stream | None = None
        self._first_frame = True
        self.going_away = False
        self._buffer = bytearray(1 << 18)
        self._start = self._end = 0
        self._deadline = 0.0
        self._last_used = 0.0
        # Our preface: no push, and receive windows as large as HTTP/2 allows, so the peer
        # never waits on us; the connection window is topped up as data arrives.
        settings = struct.pack(">HIHI", SETTINGS_ENABLE_PUSH, 0, SETTINGS_INITIAL_WINDOW_SIZE, MAX_WINDOW)
        try:
            self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0, settings)
                              + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WINDOW - DEFAULT_WINDOW)))
        except OSError:
            self.sock.close()
            raise

    # -- reading ---------------------------------------------------------------------------
    def _compact(self, need: int) -> None:
        """Move the unread bytes to the buffer's start (growing it to ``need`` if smaller)."""
        leftover = self._buffer[self._start:self._end]
        if need > len(self._buffer):
            self._buffer = bytearray(need)
        self._buffer[:len(leftover)] = leftover
        self._start, self._end = 0, len(leftover)

    def _fill(self, need: int) -> None:
        """Read until ``need`` bytes are buffered from _start."""
        if self._start + need > len(self._buffer):
            self._compact(need)
        view = memoryview(self._buffer)
        while self._end - self._start < need:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            got = self.sock.recv_into(view[self._end:])
            if not got:
                raise ConnectionFailed("the server closed the connection")
            self._end += got

    def _check_header(self, head: bytes | bytearray) -> None:
        """Refuse what is not an HTTP/2 server's frame header before waiting for its bytes."""
        if self._first_frame and head.startswith(b"HTTP/"):
            raise ConnectionFailed("the server answered in HTTP/1.1, not gRPC: is this its HTTP port?")
        if self._first_frame and head[3] != SETTINGS:
            raise ConnectionFailed("the server did not start with HTTP/2 SETTINGS: is it a gRPC server?")
        length = int.from_bytes(head[:3], "big")
        if length > DEFAULT_MAX_FRAME:
            raise ConnectionFailed(f"the server sent a frame of {length} bytes, above the {DEFAULT_MAX_FRAME} we allow")

    def _read_frame(self) -> tuple[int, int, int, bytes]:
        self._fill(9)
        head = self._buffer[self._start:self._start + 9]
        self._check_header(head)
        self._first_frame = False
        length_type, flags, stream = _FRAME_HEADER.unpack(head)
        length, kind = length_type >> 8, length_type & 0xFF
        self._fill(9 + length)
        payload = bytes(self._buffer[self._start + 9:self._start + 9 + length])
        self._start += 9 + length
        return kind, flags, stream & MAX_STREAM_ID, payload

    @staticmethod
    def _unpad(flags: int, payload: bytes) -> bytes:
        if flags & PADDED:
            if not payload or payload[0] >= len(payload):
                raise ConnectionFailed("the server sent a frame with bad padding")
            return payload[1:len(payload) - payload[0]]
        return payload

    def _header_block(self, flags: int, stream: int, payload: bytes) -> list[tuple[str, str]]:
        block = self._unpad(flags, payload)
        if flags & PRIORITY_FLAG:
            block = block[5:]
        while not flags & END_HEADERS:
            kind, flags, more_stream, more = self._read_frame()
            if kind != CONTINUATION or more_stream != stream:
                raise ConnectionFailed("the server broke a header block with another frame")
            block += more
        try:
            return self._decoder.decode(block)
        except HpackError as e:
            raise ConnectionFailed(f"the server's headers could not be decoded: {e}") from None

    def _handle(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        """Act on one frame from the peer."""
        stream = self._stream if self._stream is not None and stream_id == self._stream.id else None
        self._check_frame(kind, flags, stream_id, payload)
        if kind == DATA:
            self._received += len(payload)
            if self._received >= 1 << 30:
                self.sock.sendall(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self._received)))
                self._received = 0
            if stream is not None and not stream.closed:
                stream.data.append(self._unpad(flags, payload))
                stream.closed = bool(flags & END_STREAM)
        elif kind == HEADERS:
            fields = self._header_block(flags, stream_id, payload)  # decoded whatever the stream
            if stream is not None and not stream.closed and not stream.informational(fields):
                if stream.headers is None:
                    stream.headers = fields
                else:
                    stream.trailers = fields
                stream.closed = bool(flags & END_STREAM)
        elif kind == RST_STREAM:
            if stream is not None:
                stream.reset = struct.unpack(">I", payload)[0]
                stream.closed = True
        elif kind == SETTINGS:
            if not flags & ACK:
                self._apply_settings(payload)
                self.sock.sendall(frame(SETTINGS, ACK, 0))
        elif kind == PING:
            if not flags & ACK:
                self.sock.sendall(frame(PING, ACK, 0, payload))
        elif kind == GOAWAY:
            last_stream, code = struct.unpack(">II", payload[:8])
            self.going_away = True
            if self._stream is not None and self._stream.id > last_stream & MAX_STREAM_ID:
                debug = payload[8:].decode(errors="replace")
                raise Refused(f"the server is closing the connection (GOAWAY {error_name(code)}"
                              + (f": {debug})" if debug else ")") + " before it took the call")
        elif kind == WINDOW_UPDATE:
            increment = struct.unpack(">I", payload)[0] & MAX_WINDOW
            if increment == 0:
                raise ConnectionFailed("the server sent a WINDOW_UPDATE of 0")
            if stream_id == 0:
                self._send_window += increment
                if self._send_window > MAX_WINDOW:
                    raise ConnectionFailed("the server's WINDOW_UPDATEs took the connection window past 2^31-1")
            elif stream is not None:
                stream.window += increment
                if stream.window > MAX_WINDOW:
                    raise ConnectionFailed("the server's WINDOW_UPDATEs took a stream window past 2^31-1")
        elif kind in (PUSH_PROMISE, CONTINUATION):
            raise ConnectionFailed(f"the server sent an unexpected HTTP/2 frame (type {kind})")
        # PRIORITY and unknown frame types are ignored, as RFC 9113 asks

    @staticmethod
    def _check_frame(kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        """Refuse a frame of the wrong size, or on the wrong stream, for its type (RFC 9113 6):
        reading on from one would leave the connection out of step."""
        size = _FIXED_SIZE.get(kind)
        if size is not None and len(payload) != size:
            raise ConnectionFailed(f"the server sent a {_FRAME_NAMES[kind]} of {len(payload)} bytes, not {size}")
        if kind == GOAWAY and len(payload) < 8:
            raise ConnectionFailed(f"the server sent a GOAWAY of {len(payload)} bytes, under 8")
        if kind == SETTINGS and (len(payload) % 6 or (flags & ACK and payload)):
            raise ConnectionFailed(f"the server sent a SETTINGS frame of {len(payload)} bytes")
        on_connection = kind in (SETTINGS, PING, GOAWAY)
        if kind <= CONTINUATION and kind != WINDOW_UPDATE and on_connection != (stream_id == 0):
            raise ConnectionFailed(f"the server sent a {_FRAME_NAMES[kind]} on stream {stream_id}")

    def _apply_settings(self, payload: bytes) -> None:
        for offset in range(0, len(payload), 6):
            key, value = struct.unpack_from(">HI", payload, offset)
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ConnectionFailed(f"the server set an initial window of {value}, above 2^31-1")
                if self._stream is not None:  # applies to open streams too (RFC 9113 6.9.2)
                    self._stream.window += value - self._peer_initial_window
                self._peer_initial_window = value
            elif key == SETTINGS_MAX_FRAME_SIZE:
                if not DEFAULT_MAX_FRAME <= value <= (1 << 24) - 1:
                    raise ConnectionFailed(f"the server set a maximum frame size of {value}, outside 16384..2^24-1")
                self._peer_max_frame = value
            elif key == SETTINGS_HEADER_TABLE_SIZE and value < self._peer_table_size:
                # Our encoder never adds to the peer's table, but a decoder that lowered
                # the limit expects the next block to say it was heard (RFC 7541 4.2).
                self._peer_table_size = value
                self._table_update = encode_int(0, 5, 0x20)

    def _can_start(self) -> bool:
        return not self.going_away and self._next_stream <= MAX_STREAM_ID

    def usable(self, deadline: float) -> bool:
        """Whether a call may start here: frames that came in while the connection was idle
        (a GOAWAY, SETTINGS, PING) are read first without waiting, so a connection the
        server closed or is closing is left before a request is sent on it, not after.
        Raises ConnectionFailed when what came in is not HTTP/2 at all.

        Back-to-back calls skip the look (it costs a system call and an exception, about
        10% of a call's client CPU): in the microseconds between them a GOAWAY is no more
        likely than during a call, and one that comes fails that call cleanly anyway."""
        if time.monotonic() - self._last_used < IDLE_CHECK_S and self._end == self._start:
            return self._can_start()
        # frames already started (a header block's CONTINUATIONs) are waited for until then
        self._deadline = deadline
        try:
            while True:
                if self._end - self._start >= 9:
                    self._check_header(self._buffer[self._start:self._start + 9])
                    length = int.from_bytes(self._buffer[self._start:self._start + 3], "big")
                    if self._end - self._start >= 9 + length:
                        self._handle(*self._read_frame())
                        continue
                if self._end == len(self._buffer):  # room before reading on
                    self._compact(0)
                self.sock.settimeout(0.0)  # a socket with a timeout would wait for data first
                try:
                    got = self.sock.recv_into(memoryview(self._buffer)[self._end:])
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):  # the latter two: TLS's
                    return self._can_start()
                if not got:
                    return False
                self._end += got
        except OSError:
            return False
        finally:
            try:
                self.sock.settimeout(self._timeout)
            except OSError:
                pass  # closed under us: the next operation on it says so

    # -- a call ----------------------------------------------------------------------------
    def call(self, message: bytes, deadline: float | None = None) -> bytes:
        """One call; ``deadline`` (time.monotonic()) defaults to the timeout from now."""
        if not self._can_start():
            raise ConnectionFailed("the server is closing the connection" if self.going_away
                                   else "the connection has no stream ids left")
        self._deadline = time.monotonic() + self._timeout if deadline is None else deadline
        stream = self._stream = _Stream(self._next_stream, self._peer_initial_window)
        self._next_stream += 2
        try:
            out = [frame(HEADERS, END_HEADERS, stream.id, self._table_update + self._block)]
            self._table_update = b""
            sent = 0
            while not stream.closed:
                if sent < len(message):
                    allowed = min(len(message) - sent, self._send_window, stream.window)
                    while allowed > 0:
                        size = min(allowed, self._peer_max_frame)
                        last = sent + size == len(message)
                        out.append(frame(DATA, END_STREAM if last else 0, stream.id, message[sent:sent + size]))
                        sent += size
                        allowed -= size
                        self._send_window -= size
                        stream.window -= size
                    if out:
                        self.sock.settimeout(max(self._deadline - time.monotonic(), 0.001))
                        self.sock.sendall(b"".join(out))
                        out = []
                self._handle(*self._read_frame())
            if sent < len(message) and stream.reset is None:
                # the server answered before taking the whole request (an early error)
                self.sock.sendall(frame(RST_STREAM, 0, stream.id, struct.pack(">I", 8)))
        except TimeoutError:
            raise ConnectionFailed(f"DEADLINE_EXCEEDED: no response within {self._timeout:g} s") from None
        except OSError as e:
            raise ConnectionFailed(f"{type(e).__name__}: {e}") from None
        finally:
            self._stream = None
            self._last_used = time.monotonic()
        return self._response(stream)

    @staticmethod
    def _response(stream: _Stream) -> bytes:
        if stream.reset == REFUSED_STREAM:
            raise Refused("the server refused the stream (REFUSED_STREAM) before it took the call")
        if stream.reset is not None:
            raise CallFailed(f"the server reset the stream ({error_name(stream.reset)})")
        headers = dict(stream.headers or ())
        status = headers.get(":status", "")
        if status != "200":
            raise CallFailed(f"HTTP {status or '(no status)'} from the server, not a gRPC answer")
        trailers = dict(stream.trailers) if stream.trailers is not None else headers  # trailers-only
        if "grpc-status" not in trailers:
            raise CallFailed("the server ended the call without a gRPC status")
        try:
            code = int(trailers["grpc-status"])
        except ValueError:
            code = 2  # UNKNOWN
        if code != 0:
            name = GRPC_STATUS[code] if code < len(GRPC_STATUS) else f"status {code}"
            raise CallFailed(f"{name}: {unquote(trailers.get('grpc-message', ''))}")
        body = b"".join(stream.data)
        if len(body) < 5:
            raise CallFailed("the server's answer holds no gRPC message")
        if body[0] != 0:
            raise CallFailed("the server compressed its answer, which we did not ask for")
        length = int.from_bytes(body[1:5], "big")
        if len(body) != 5 + length:
            raise CallFailed(f"the server's gRPC message is {len(body) - 5} bytes, its prefix says {length}")
        return body[5:]

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def grpc_message(payload: bytes) -> bytes:
    """A serialized protobuf as one uncompressed gRPC message (the 5-byte prefix, then it)."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload
