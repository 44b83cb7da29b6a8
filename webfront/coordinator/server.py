"""The client port: web workers (and tools) connect here.

The coordinator is the handshake's acceptor. After it, frames are `cw` (write), `cr` (read) and
`st` (status); replies may come back in any order and carry the request's `id`. Many requests
may be in flight on one connection. Replies are coalesced per connection per loop iteration.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from webfront.coordinator.membership import MembershipUnsafe, probe_replica_id
from webfront.coordinator.state_files import StateDirError
from webfront.core._core import ClientIntake, FrameError
from webfront.protocol import (
    MAX_FRAME_BYTES,
    NONCE_BYTES,
    PROTOCOL_VERSION,
    ProtocolError,
    acceptor_mac,
    decode_body,
    encode_frame,
    initiator_mac,
    pack_length,
    packb,
)

if TYPE_CHECKING:
    from webfront.coordinator.core import Coordinator

log = logging.getLogger("webfront.coordinator")

CLIENT_FRAME_HEADROOM = 4096  # bytes a write frame may add to the client frame it came from


def limit_receive_size(transport: asyncio.BaseTransport) -> None:
    """On stock asyncio, read at most 64 KiB per recv: its 256 KiB default costs an mmap and a
    munmap per read (CPython issue 85451). uvloop's transports have no such attribute."""
    if hasattr(transport, "max_size"):
        transport.max_size = 1 << 16  # type: ignore[attr-defined]


class ClientConnection(asyncio.Protocol):
    def __init__(self, coordinator: Coordinator) -> None:
        self.c = coordinator
        self.transport: asyncio.Transport | None = None
        # Splits frames, checks a write against the replicas' limits and makes most of its
        # write frame (cpp_replica/coordinator/ClientFrame.h). A client frame becomes a write
        # frame a few dozen bytes larger (epoch, seq, timestamp): keep room so that no write the
        # coordinator sequences exceeds a replica's frame limit.
        self.intake = ClientIntake(MAX_FRAME_BYTES - CLIENT_FRAME_HEADROOM)
        self.phase = "hello"
        self.nonce_i = b""
        self.nonce_a = os.urandom(NONCE_BYTES)
        self.out: list[bytes] = []
        self.closed = False
        self.peer: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        limit_receive_size(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.out = []

    # Output ---------------------------------------------------------------------------------

    def send_frame(self, body: dict) -> None:
        if self.closed:
            return
        if not self.out:
            self.c.flusher.mark(self)
        packed = packb(body)  # encode_frame, inlined: every client reply passes here
        self.out.append(pack_length(len(packed)) + packed)

    def send_error(self, cid: Any, code: str, msg: str, retry: bool = False) -> None:
        """An error reply; `retry` marks a refusal of the moment that the client resends."""
        body = {"t": "err", "id": cid, "code": code, "msg": msg}
        if retry:
            body["retry"] = True
        self.send_frame(body)

    def flush(self) -> None:
        out = self.out
        if out and not self.closed:
            self.out = []
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])

    def _refuse(self, code: str, msg: str) -> None:
        log.warning("client %s: %s: %s", self.peer, code, msg)
        if self.transport is not None and not self.closed:
            self.transport.write(encode_frame({"t": "err", "code": code, "msg": msg}))
            self.transport.close()
        self.closed = True

    # Input ----------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.intake.feed(data)
        except FrameError as exc:
            self._refuse("malformed", str(exc))
            return
        c = self.c
        for frame in frames:
            if self.closed:
                return
            if type(frame) is tuple:  # a write (or a refused read) the C++ intake read (hot path)
                if self.phase != "open":
                    self._refuse("malformed", "a request during the handshake")
                    return
                if len(frame) == 3:
                    c.client_write(self, *frame)
                else:  # it would poison every replica's connection: never sequenced or sent
                    self.send_error(frame[0], "invalid", frame[1])
                continue
            try:
                body = decode_body(frame)
                t = body["t"]
                if self.phase != "open":
                    self._handshake(body)
                elif t == "cr":
                    q = body["q"]
                    args = body.get("a") or {}
                    mode = body.get("mode", "linearizable")
                    if mode == "session":
                        min_seq = body.get("min") or 0
                    elif mode == "linearizable":
                        min_seq = c.broadcaster.committed_seq
                    else:
                        raise ProtocolError(f"bad read mode {mode!r}")
                    if not isinstance(q, str) or not isinstance(args, dict) \
                            or not isinstance(min_seq, int):
                        raise ProtocolError("bad cr fields")
                    c.reads.submit(self, body["id"], q, args, min_seq)
                elif t == "st":
                    self.send_frame({"t": "str", "id": body.get("id"), "status": c.status()})
                elif t == "madd":
                    addr = body["addr"]
                    if not isinstance(addr, str):
                        raise ProtocolError("bad madd addr")
                    c.loop.create_task(self._add_member(body.get("id"), addr))
                elif t == "mrm":
                    c.loop.create_task(self._remove_member(body.get("id"), body["replica"]))
                else:
                    raise ProtocolError(f"unknown frame type {t!r}")
            except (KeyError, ProtocolError) as exc:
                self._refuse("malformed", f"{type(exc).__name__}: {exc}")
                return

    async def _add_member(self, cid: Any, addr: str) -> None:
        """madd: learn the replica's id from its handshake, add it (it then recovers by state
        transfer like any replica that is behind) and answer `mr`."""
        from webfront.coordinator.config import ReplicaConfig, parse_address

        try:
            host, port = parse_address(addr)
            replica_id = await probe_replica_id((host, port), self.c.secret)
            await self.c.add_member_safely(ReplicaConfig(replica_id, host, port))
        except (TimeoutError, OSError, ValueError, ProtocolError) as exc:
            self.send_error(cid, "invalid", f"cannot add {addr}: {exc}")
            return
        except MembershipUnsafe as exc:
            self.send_error(cid, "unavailable", f"cannot add {addr}: {exc}")
            return
        except StateDirError as exc:
            self.send_error(cid, "unavailable", f"cannot add {addr}, membership unchanged: {exc}")
            return
        self.send_frame({"t": "mr", "id": cid, "replica": replica_id})

    async def _remove_member(self, cid: Any, replica: Any) -> None:
        """mrm: remove the replica from the membership and answer `mr`."""

        try:
            await self.c.remove_member_safely(str(replica))
        except ValueError as exc:
            self.send_error(cid, "invalid", str(exc))
        except MembershipUnsafe as exc:
            self.send_error(cid, "unavailable", str(exc))
        except StateDirError as exc:
            self.send_error(cid, "unavailable", f"membership unchanged: {exc}")
        else:
            self.send_frame({"t": "mr", "id": cid, "replica": replica})

    def _handshake(self, body: dict) -> None:
        t = body["t"]
        if self.phase == "hello" and t == "hello":
            versions = body.get("v")
            nonce = body.get("n")
            if not isinstance(nonce, bytes) or not isinstance(versions, list):
                raise ProtocolError("bad hello")
            if PROTOCOL_VERSION not in versions:
                self._refuse("version", f"no common version in {versions}")
                return
            self.nonce_i = nonce
            self.transport.write(encode_frame({
                "t": "welcome", "v": PROTOCOL_VERSION, "id": "coordinator", "n": self.nonce_a,
                "mac": acceptor_mac(self.c.secret, nonce, self.nonce_a),
            }))
            self.phase = "auth"
        elif self.phase == "auth" and t == "auth":
            expected = initiator_mac(self.c.secret, self.nonce_i, self.nonce_a)
            if not hmac.compare_digest(body.get("mac", b""), expected):
                self._refuse("auth_failed", "bad MAC")
                return
            self.transport.write(encode_frame({"t": "ready"}))
            self.phase = "open"
        else:
            raise ProtocolError(f"unexpected {t!r} during handshake")
