"""A test-only TCP proxy between the coordinator and one replica, able to lose the replica's acks.

The coordinator dials the proxy (loopback, a free port); for each connection the proxy dials the
real replica and forwards bytes both ways, one thread per direction. Two switches:

- `swallow()`: on the connections open now, every frame the replica sends (acks, heartbeat
  replies) is read and dropped, while the coordinator's frames still reach the replica. The
  replica->coordinator stream is cut at frame boundaries (4-byte big-endian length, then the
  body), so the coordinator never holds half a frame, and each dropped frame is kept, decoded,
  for the test to look at (`swallowed()`).
- `cut()`: close both sides of every connection open now. Connections made afterwards forward
  everything: swallowing is a property of a connection, never of the proxy.

`stop()` closes the listener and every connection and joins the threads with a bound.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable

from webfront.protocol import MAX_FRAME_BYTES, decode_body

_LENGTH = struct.Struct(">I")


class _Link:
    """One proxied connection: the coordinator's side, the replica's side, two pump threads.

    Whichever pump ends first shuts both sockets down (which wakes the other out of recv); the
    last one to end closes them, so no thread ever reads a closed (and maybe reused) fd.
    """

    def __init__(self, coordinator_side: socket.socket, replica_side: socket.socket) -> None:
        self.coordinator_side = coordinator_side
        self.replica_side = replica_side
        self.swallow = False
        self.lock = threading.Lock()
        self.running = 2  # pump threads not yet ended
        self.threads: list[threading.Thread] = []

    def shut(self) -> None:
        for sock in (self.coordinator_side, self.replica_side):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already shut or never connected

    def pump_ended(self) -> None:
        self.shut()
        with self.lock:
            self.running -= 1
            last = self.running == 0
        if last:
            self.coordinator_side.close()
            self.replica_side.close()


class AckProxy:
    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target = target
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(0.05)  # the accept loop checks `_stopping` this often
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._swallowed: list[dict] = []
        self._stopping = threading.Event()
        self._acceptor = threading.Thread(target=self._accept_loop, name="ack-proxy-accept",
                                          daemon=True)
        self._pumps: list[threading.Thread] = []  # every pump thread started
        self.errors: list[str] = []  # what broke a pump other than a closed socket
        self.accepted = 0  # connections forwarded so far

    @property
    def dial(self) -> str:
        """HOST:PORT for the coordinator's `--replica ID=HOST:PORT`."""
        return f"{self.address[0]}:{self.address[1]}"

    # Switches ---------------------------------------------------------------------------------

    def start(self) -> AckProxy:
        self._acceptor.start()
        return self

    def swallow(self) -> int:
        """Drop the replica's frames on every connection open now; returns how many."""
        with self._lock:
            links = [x for x in self._links if x.running]
            for link in links:
                link.swallow = True
        return len(links)

    def cut(self) -> int:
        """Close both sides of every connection open now; returns how many."""
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.shut()
        return len(links)

    def swallowed(self) -> list[dict]:
        """The frames dropped so far, decoded, oldest first."""
        with self._lock:
            return list(self._swallowed)

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every connection; join every thread within timeout."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        if self._acceptor.is_alive():
            self._acceptor.join(timeout)
        self._listener.close()
        self.cut()
        with self._lock:
            pumps = list(self._pumps)
        for thread in pumps:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in pumps if t.is_alive()]
        assert not stuck, f"proxy threads did not end within {timeout}s: {stuck}"
        assert not self.errors, f"proxy errors: {self.errors}"

    # Threads ----------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                coordinator_side, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            coordinator_side.settimeout(None)
            try:
                replica_side = socket.create_connection(self.target, timeout=2.0)
            except OSError:
                coordinator_side.close()  # the replica is not there: the coordinator retries
                continue
            replica_side.settimeout(None)
            for sock in (coordinator_side, replica_side):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(coordinator_side, replica_side)
            n = self.accepted + 1
            link.threads = [
                threading.Thread(target=self._pump, args=(link, link.coordinator_side,
                                                          link.replica_side, self._raw),
                                 name=f"ack-proxy-{n}-to-replica", daemon=True),
                threading.Thread(target=self._pump, args=(link, link.replica_side,
                                                          link.coordinator_side,
                                                          self._frames(link)),
                                 name=f"ack-proxy-{n}-to-coordinator", daemon=True),
            ]
            with self._lock:
                if self._stopping.is_set():
                    link.running = 0
                    coordinator_side.close()
                    replica_side.close()
                    return
                self._links.append(link)
                self._pumps += link.threads
                self.accepted = n
            for thread in link.threads:
                thread.start()

    @staticmethod
    def _raw(data: bytes) -> bytes:
        return data

    def _frames(self, link: _Link) -> Callable[[bytes], bytes]:
        """The replica->coordinator filter: whole frames only; dropped ones while swallowing."""
        pending = bytearray()

        def keep(data: bytes) -> bytes:
            pending.extend(data)
            out = bytearray()
            offset = 0
            while len(pending) - offset >= 4:
                (length,) = _LENGTH.unpack_from(pending, offset)
                assert length <= MAX_FRAME_BYTES, f"replica sent a {length}-byte frame"
                end = offset + 4 + length
                if end > len(pending):
                    break
                if link.swallow:
                    body = decode_body(bytes(pending[offset + 4:end]))
                    with self._lock:
                        self._swallowed.append(body)
                else:
                    out += pending[offset:end]
                offset = end
            del pending[:offset]
            return bytes(out)

        return keep

    def _pump(self, link: _Link, src: socket.socket, dst: socket.socket,
              keep: Callable[[bytes], bytes]) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    return
                out = keep(data)
                if out:
                    dst.sendall(out)
        except OSError:
            return  # the other side closed or the link was cut
        except Exception as exc:  # noqa: BLE001 - a frame it could not parse: stop() reports it
            with self._lock:
                self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            link.pump_ended()
