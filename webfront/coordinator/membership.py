"""Cluster membership: the replicas (id, host, port) the coordinator sends writes to.

The flags or TOML file give the first membership; from then on `members.json` in the state dir
is the truth (changed by `madd` / `mrm`, written durably) and survives a coordinator restart.
The majority is counted over all members, live or not.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from webfront.coordinator.config import ReplicaConfig
from webfront.coordinator.state_files import StateDirError, read_state_file, write_state_file
from webfront.protocol import (
    NONCE_BYTES,
    FrameDecoder,
    ProtocolError,
    check_welcome,
    encode_frame,
    hello_body,
)


async def probe_replica_id(address: tuple[str, int], secret: bytes,
                           timeout: float = 3.0) -> str:
    """Run the handshake with a replica and return the id from its `welcome`."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), timeout)
    try:
        nonce = os.urandom(NONCE_BYTES)
        writer.write(encode_frame(hello_body("coordinator", nonce)))
        decoder = FrameDecoder()
        bodies: list[dict] = []

        async def next_body() -> dict:
            while not bodies:
                data = await asyncio.wait_for(reader.read(65536), timeout)
                if not data:
                    raise ProtocolError("closed during handshake")
                bodies.extend(decoder.feed(data))
            return bodies.pop(0)

        welcome = await next_body()
        writer.write(check_welcome(welcome, secret, nonce))
        ready = await next_body()
        if ready.get("t") != "ready":
            raise ProtocolError(f"expected ready, got {ready}")
        return str(welcome["id"])
    finally:
        writer.close()


class MembershipUnsafe(Exception):
    """A membership change refused: too few of the new members would hold every acknowledged
    write (Coordinator.until_held)."""


class MembershipStore:
    def __init__(self, state_dir: str | None) -> None:
        self.path = Path(state_dir) / "members.json" if state_dir else None

    def load(self, configured: list[ReplicaConfig]) -> list[ReplicaConfig]:
        """The stored membership, or the configured one (then stored) the first time."""
        data = read_state_file(self.path) if self.path is not None else None
        if data is None:
            self.save(configured)
            return list(configured)
        try:
            return [ReplicaConfig(str(r["id"]), r["host"], int(r["port"]))
                    for r in data["replicas"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise StateDirError(f"{self.path} is corrupt (bad field: {exc!r})") from exc

    def save(self, members: list[ReplicaConfig]) -> None:
        """Raises StateDirError when it cannot be stored: the caller then changes nothing."""
        if self.path is not None:
            write_state_file(self.path, {"replicas": [
                {"id": r.id, "host": r.host, "port": r.port} for r in members]})
