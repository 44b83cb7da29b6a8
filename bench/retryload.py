"""A closed-loop load generator that survives the coordinator: for the coordinator-kill part of
the failover scenario.

bench/loadgen.c is faster but keeps the connections Python opened; when the coordinator dies
its clients must reconnect, run the handshake again and resend the write in flight with the
same request id (the coordinator and the replicas answer a retried id with its first result,
so nothing is applied twice). That is what the web workers' client library does; this does it
for N clients on one asyncio loop. A write's latency runs from its first send to its answer, so
the outage shows up in the latencies of the writes caught in it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time

from webfront.protocol import (
    NONCE_BYTES,
    FrameDecoder,
    ProtocolError,
    check_welcome,
    encode_frame,
    hello_body,
    write_reply,
)


class _Conn(asyncio.Protocol):
    def __init__(self, client: RetryClient) -> None:
        self.client = client
        self.decoder = FrameDecoder()
        self.nonce = os.urandom(NONCE_BYTES)
        self.phase = "welcome"
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(encode_frame(hello_body("client", self.nonce)))

    def data_received(self, data: bytes) -> None:
        try:
            bodies = self.decoder.feed(data)
            for body in bodies:
                if self.phase == "welcome":
                    self.transport.write(check_welcome(body, self.client.secret, self.nonce))
                    self.phase = "ready"
                elif self.phase == "ready":
                    self.phase = "open"
                    self.client.on_open(self)
                else:
                    self.client.on_reply(body)
        except ProtocolError:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.on_lost(self)


class RetryClient:
    """One closed-loop client: one write in flight, resent with its rid after a reconnect."""

    def __init__(self, n: int, address: tuple[str, int], secret: bytes, payload: dict,
                 sink: list, state: dict) -> None:
        self.n = n
        self.address = address
        self.secret = secret
        self.payload = payload
        self.sink = sink  # (completion time, latency s, ok)
        self.state = state
        self.conn: _Conn | None = None
        self.seq = 0
        self.t0 = 0.0
        self.frame = b""
        self.reconnects = 0

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        while self.state["running"]:
            try:
                await loop.create_connection(lambda: _Conn(self), *self.address)
                return
            except OSError:
                await asyncio.sleep(0.01)

    def on_open(self, conn: _Conn) -> None:
        self.conn = conn
        if not self.frame:
            self._next()
        conn.transport.write(self.frame)  # a new write, or the one in flight, same rid

    def _next(self) -> None:
        self.seq += 1
        self.t0 = time.perf_counter()
        self.frame = encode_frame({"t": "cw", "id": self.seq, "rid": f"b{self.n}-{self.seq}",
                                   "op": "create_post", "a": self.payload})

    def on_reply(self, body: dict) -> None:
        if body.get("id") != self.seq:
            return
        now = time.perf_counter()
        reply = write_reply(body) if body.get("t") == "cwr" else None
        ok = isinstance(reply, dict) and reply.get("ok")
        if not ok and body.get("code") in ("unavailable", "timeout") and \
                (body.get("retry") or "starting" in str(body.get("msg", ""))):
            # A coordinator still choosing its epoch, or its replicas still catching up: not
            # an answer, ask again.
            asyncio.get_running_loop().call_later(0.005, self._resend)
            return
        self.sink.append((now, now - self.t0, bool(ok)))
        if self.state["running"]:
            self._next()
            self.conn.transport.write(self.frame)
        else:
            self.frame = b""

    def _resend(self) -> None:
        if self.conn is not None and self.conn.transport is not None and \
                not self.conn.transport.is_closing():
            self.conn.transport.write(self.frame)

    def on_lost(self, conn: _Conn) -> None:
        if self.conn is conn:
            self.conn = None
        if self.state["running"] and self.frame:
            self.reconnects += 1
            asyncio.get_running_loop().create_task(self.connect())


async def run(address: tuple[str, int], secret: bytes, clients: int, seconds: float,
              events: list[tuple[float, object]]) -> tuple[list, float, int]:
    """Drive for `seconds`; events are (offset s, callable run in a thread). Returns samples
    (time offset s, latency s, ok), the start time and the number of reconnects."""
    state = {"running": True}
    sink: list = []
    cs = [RetryClient(i, address, secret, {"actor": "bench1", "text": "x" * 80}, sink, state)
          for i in range(clients)]
    start = time.perf_counter()
    await asyncio.gather(*(c.connect() for c in cs))
    loop = asyncio.get_running_loop()
    for offset, action in events:
        await asyncio.sleep(max(0.0, start + offset - time.perf_counter()))
        await loop.run_in_executor(None, action)
    await asyncio.sleep(max(0.0, start + seconds - time.perf_counter()))
    state["running"] = False
    await asyncio.sleep(0.3)
    for c in cs:
        if c.conn is not None and c.conn.transport is not None:
            c.conn.transport.close()
    return ([(t - start, lat, ok) for t, lat, ok in sink], start,
            sum(c.reconnects for c in cs))
