"""Framing and handshake of the cluster's wire protocol (docs/protocol.md).

One place for both ends written in Python: the coordinator, the web workers' client and tests.
Frames are a 4-byte big-endian length followed by one MessagePack map.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import struct
from pathlib import Path
from typing import Any

import msgpack

PROTOCOL_VERSION = 1
# A replica speaking version 2 batches one turn's acks into one `as` frame (docs/protocol.md);
# the coordinator offers it on its replica links, everything else speaks 1.
BATCHED_ACKS_VERSION = 2
MAX_FRAME_BYTES = 1 << 20
NONCE_BYTES = 16
_LENGTH = struct.Struct(">I")


# What msgpack raises for bytes that are not one valid value: OutOfData and friends derive from
# UnpackException, ExtraData/FormatError/StackError/bad UTF-8 from ValueError, an unhashable map
# key is a TypeError.
UNDECODABLE = (msgpack.UnpackException, ValueError, TypeError, OverflowError)


class ProtocolError(Exception):
    """The peer sent something the protocol does not allow; the connection must be closed."""


class AuthError(ProtocolError):
    """The peer failed the shared-secret handshake."""


def encode_body(body: dict[str, Any]) -> bytes:
    return msgpack.packb(body, use_bin_type=True)


# For the coordinator's hot paths, which inline encode_frame: packb(body) gives the bytes of
# encode_body(body) a third faster (one reused Packer), pack_length(n) the 4-byte length prefix.
# Not thread-safe (one shared Packer): event-loop code only; threads use encode_frame.
packb = msgpack.Packer(use_bin_type=True).pack
pack_length = _LENGTH.pack


def frame_bytes(packed_body: bytes) -> bytes:
    """Prefix an already encoded body with its length (writes are encoded once, sent N times)."""
    return _LENGTH.pack(len(packed_body)) + packed_body


def encode_frame(body: dict[str, Any]) -> bytes:
    return frame_bytes(encode_body(body))


def ack_reply_bytes(ack: dict[str, Any]) -> bytes:
    """The encoded reply of a replica's ack: its `rb` (bin), or `r` re-encoded when it comes
    from a replica_server that still sends the reply as a map."""
    rb = ack.get("rb")
    if isinstance(rb, bytes):
        return rb
    return encode_body(ack.get("r"))  # type: ignore[arg-type]


def ack_reply(ack: dict[str, Any]) -> Any:
    """The decoded reply of an ack (`rb`, or `r` from an older replica_server)."""
    if "rb" in ack:
        return msgpack.unpackb(ack["rb"], raw=False)
    return ack.get("r")


def write_reply(cwr: dict[str, Any]) -> Any:
    """The decoded reply of a client write reply `cwr` (`rb`: the replica's bytes, spliced by
    the coordinator; `r` from an older coordinator)."""
    rb = cwr.get("rb")
    if isinstance(rb, bytes):
        try:
            return msgpack.unpackb(rb, raw=False)
        except UNDECODABLE as exc:
            raise ProtocolError(f"undecodable write reply: {exc}") from None
    return cwr.get("r")


def decode_body(data: bytes) -> dict[str, Any]:
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except UNDECODABLE as exc:
        raise ProtocolError(f"undecodable body: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("t"), str):
        raise ProtocolError("body is not a map with a string 't'")
    return body


class FrameDecoder:
    """Incremental decoder: feed received bytes, get whole frame bodies back.

    Suited to asyncio Protocols: one decoder per connection, no coroutine per frame.
    """

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_frame_bytes

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        # Hot path (every ack and client request): frames are decoded straight from a
        # memoryview of what arrived (no slice copy per frame), and when nothing was left over
        # from the previous call, from `data` itself (no copy into the buffer either).
        buffer = self._buffer
        if buffer:
            buffer += data
            src: bytes | bytearray = buffer
        else:
            src = data
        size = len(src)
        bodies = []
        offset = 0
        unpack_from = _LENGTH.unpack_from
        unpackb = msgpack.unpackb
        view = memoryview(src)
        try:
            while size - offset >= 4:
                (length,) = unpack_from(src, offset)
                if length > self._max:
                    raise ProtocolError(f"frame of {length} bytes exceeds limit {self._max}")
                end = offset + 4 + length
                if end > size:
                    break
                try:
                    body = unpackb(view[offset + 4 : end], raw=False, strict_map_key=True)
                except UNDECODABLE as exc:
                    raise ProtocolError(f"undecodable body: {exc}") from None
                if type(body) is not dict or type(body.get("t")) is not str:
                    raise ProtocolError("body is not a map with a string 't'")
                bodies.append(body)
                offset = end
        finally:
            view.release()
        if src is buffer:
            if offset:
                del buffer[:offset]
        elif offset < size:
            buffer += data[offset:]
        return bodies


def read_secret(path: str | os.PathLike[str] | None) -> bytes:
    """The cluster's shared secret from a file; None means insecure development mode (empty key)."""
    if path is None:
        return b""
    secret = Path(path).read_bytes().strip()
    if not secret:
        raise ValueError(f"secret file {path} is empty")
    return secret


def acceptor_mac(secret: bytes, initiator_nonce: bytes, acceptor_nonce: bytes) -> bytes:
    return hmac.new(secret, b"acceptor" + initiator_nonce + acceptor_nonce, hashlib.sha256).digest()


def initiator_mac(secret: bytes, initiator_nonce: bytes, acceptor_nonce: bytes) -> bytes:
    return hmac.new(secret, b"initiator" + initiator_nonce + acceptor_nonce, hashlib.sha256).digest()


def hello_body(role: str, nonce: bytes, versions: tuple[int, ...] = (PROTOCOL_VERSION,)
               ) -> dict[str, Any]:
    return {"t": "hello", "v": list(versions), "role": role, "n": nonce}


def check_welcome(welcome: dict[str, Any], secret: bytes, nonce: bytes) -> bytes:
    """Verify the acceptor's proof; return the auth frame the initiator must send next."""
    if welcome.get("t") == "err":
        raise AuthError(f"peer refused: {welcome.get('code')}: {welcome.get('msg', '')}")
    acceptor_nonce = welcome.get("n")
    if welcome.get("t") != "welcome" or not isinstance(acceptor_nonce, bytes):
        raise ProtocolError(f"expected welcome, got {welcome.get('t')!r}")
    if not hmac.compare_digest(welcome.get("mac", b""), acceptor_mac(secret, nonce, acceptor_nonce)):
        raise AuthError("peer does not know the cluster secret")
    return encode_frame({"t": "auth", "mac": initiator_mac(secret, nonce, acceptor_nonce)})


def recv_frame(sock: socket.socket, max_frame_bytes: int = MAX_FRAME_BYTES) -> dict[str, Any]:
    """Blocking read of one frame (for handshakes and simple tools; hot paths use FrameDecoder)."""
    (length,) = _LENGTH.unpack(_recv_exact(sock, 4))
    if length > max_frame_bytes:
        raise ProtocolError(f"frame of {length} bytes exceeds limit {max_frame_bytes}")
    return decode_body(_recv_exact(sock, length))


def _recv_exact(sock: socket.socket, count: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < count:
        chunk = sock.recv(count - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed by peer")
        chunks += chunk
    return bytes(chunks)


def connect(
    address: tuple[str, int], secret: bytes, role: str, timeout: float = 2.0,
    versions: tuple[int, ...] = (PROTOCOL_VERSION,),
) -> tuple[socket.socket, dict[str, Any]]:
    """Open a blocking connection and run the initiator side of the handshake, offering
    `versions`.

    Returns the socket and the acceptor's `ready` frame (a replica's carries s, e, d, le).
    """
    sock = socket.create_connection(address, timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        nonce = os.urandom(NONCE_BYTES)
        sock.sendall(encode_frame(hello_body(role, nonce, versions)))
        sock.sendall(check_welcome(recv_frame(sock), secret, nonce))
        ready = recv_frame(sock)
        if ready.get("t") == "err":
            raise AuthError(f"peer refused: {ready.get('code')}: {ready.get('msg', '')}")
        if ready.get("t") != "ready":
            raise ProtocolError(f"expected ready, got {ready.get('t')!r}")
        return sock, ready
    except BaseException:
        sock.close()
        raise
