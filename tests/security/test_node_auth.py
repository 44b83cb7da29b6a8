"""Node authentication on a real cluster: the shared secret is proven, never shown.

Covers what tests/core/test_replica_process.py does not: the coordinator's client port, the
secret's absence from every process's command line and from every log, start-up refusal without
a secret, the insecure flag only on loopback, and the replica's rate limit on failed handshakes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from webfront.cluster import find_replica_server
from webfront.protocol import (
    AuthError,
    connect,
    encode_frame,
    hello_body,
    initiator_mac,
    recv_frame,
)

pytestmark = pytest.mark.slow


def _address(proc) -> tuple[str, int]:
    host, port = proc.address.rsplit(":", 1)
    return host, int(port)


def _bad_auth(address: tuple[str, int], role: str = "coordinator") -> dict:
    """Runs the initiator side with a wrong MAC; returns what the acceptor answers."""
    with socket.create_connection(address, timeout=3) as sock:
        nonce = os.urandom(16)
        sock.sendall(encode_frame(hello_body(role, nonce)))
        welcome = recv_frame(sock)
        assert welcome["t"] == "welcome"
        sock.sendall(encode_frame({"t": "auth", "mac": initiator_mac(b"wrong", nonce,
                                                                    welcome["n"])}))
        try:
            answer = recv_frame(sock)
        except ConnectionError:
            return {"t": "closed"}
        # After an error the acceptor closes the connection.
        sock.settimeout(3)
        assert sock.recv(1) == b""
        return answer


def test_wrong_secret_refused_by_replica_and_coordinator(sec_cluster):
    replica = sec_cluster.replica_procs()[0]
    coordinator = sec_cluster.procs["coordinator"]
    for proc, role in ((replica, "coordinator"), (coordinator, "client")):
        # The initiator sees the acceptor cannot prove the secret it does not share...
        with pytest.raises(AuthError):
            connect(_address(proc), b"not-the-secret", role)
        # ...and the acceptor refuses an initiator that cannot prove it.
        answer = _bad_auth(_address(proc), role)
        assert answer.get("t") in ("err", "closed"), answer
        if answer["t"] == "err":
            assert answer["code"] == "auth_failed"
        # The right secret still works.
        sock, ready = connect(_address(proc), sec_cluster.secret(), role)
        sock.close()
        assert ready["t"] == "ready"


def test_insecure_initiator_refused_by_secure_cluster(sec_cluster):
    with pytest.raises(AuthError):
        connect(sec_cluster.coordinator_address, b"", "client")


def test_secret_never_on_command_line_nor_in_logs(sec_cluster):
    secret = sec_cluster.secret()
    assert len(secret) >= 32
    pids = [p for p in sec_cluster.pids().values() if p]
    assert len(pids) >= 4  # 3 replicas + coordinator
    for pid in pids:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert secret not in cmdline, f"secret on the command line of pid {pid}"
        assert b"--secret-file" in cmdline or b"--insecure-no-auth" in cmdline
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert secret not in environ, f"secret in the environment of pid {pid}"
    # Provoke failures so the logs contain auth events, then search every log.
    _bad_auth(_address(sec_cluster.replica_procs()[1]))
    _bad_auth(sec_cluster.coordinator_address, "client")
    time.sleep(0.3)
    logs = list(Path(sec_cluster.data_dir).glob("*.log"))
    assert logs
    for log in logs:
        data = log.read_bytes()
        assert secret not in data and secret.hex().encode() not in data, log
    assert any(b"auth" in log.read_bytes() for log in logs)  # the failures were logged


def test_secret_file_is_private(sec_cluster):
    mode = os.stat(sec_cluster.secret_file).st_mode & 0o777
    assert mode == 0o600, oct(mode)


@pytest.fixture
def replica_binary() -> str:
    binary = find_replica_server()
    if binary is None:
        pytest.skip("replica_server is not built (scripts/bootstrap.sh)")
    return binary


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)


def test_replica_refuses_to_start_without_a_secret(replica_binary, tmp_path):
    r = _run([replica_binary, "--listen", "127.0.0.1:0"])
    assert r.returncode != 0
    assert "--secret-file" in r.stderr and "--insecure-no-auth" in r.stderr
    empty = tmp_path / "empty"
    empty.write_text("\n")
    r = _run([replica_binary, "--listen", "127.0.0.1:0", "--secret-file", str(empty)])
    assert r.returncode != 0 and "empty" in r.stderr
    r = _run([replica_binary, "--listen", "127.0.0.1:0", "--secret-file", str(tmp_path / "none")])
    assert r.returncode != 0


def test_insecure_flag_only_on_loopback(replica_binary):
    r = _run([replica_binary, "--listen", "0.0.0.0:0", "--insecure-no-auth"])
    assert r.returncode != 0 and "loopback" in r.stderr


def test_replica_binds_loopback_by_default(replica_binary):
    r = _run([replica_binary, "--help"])
    assert "127.0.0.1" in r.stdout


def test_failed_handshakes_are_rate_limited(replica_binary, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s" * 64)
    proc = subprocess.Popen([replica_binary, "--listen", "127.0.0.1:0", "--secret-file",
                             str(secret)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline()
        address = ("127.0.0.1", int(line.rsplit(":", 1)[1]))
        refused_at = None
        for attempt in range(40):
            try:
                answer = _bad_auth(address)
            except (ConnectionError, OSError, AssertionError):
                refused_at = attempt
                break
            assert answer.get("t") in ("err", "closed")
        assert refused_at is not None, "40 bad handshakes in a row were never rate-limited"
        # Even the right secret is refused from this address for a while.
        with pytest.raises((ConnectionError, OSError, AuthError)):
            connect(address, secret.read_bytes(), "coordinator")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "auth_rate_limit" in err or "rate" in err
    assert "s" * 64 not in err
