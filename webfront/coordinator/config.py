"""Coordinator configuration: a TOML file, then command-line flags on top of it."""

from __future__ import annotations

import argparse
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

POLICIES = ("first", "majority", "all")


def parse_address(text: str) -> tuple[str, int]:
    """'HOST:PORT' (or '[v6]:PORT') -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"bad address {text!r}: want HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass(frozen=True)
class ReplicaConfig:
    id: str
    host: str
    port: int

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)


@dataclass
class CoordinatorConfig:
    replicas: list[ReplicaConfig] = field(default_factory=list)
    listen: tuple[str, int] = ("127.0.0.1", 7000)
    policy: str = "majority"
    secret_file: str | None = None
    insecure: bool = False
    state_dir: str | None = None
    run_file: str | None = None  # the local cluster's run file: replica pids for the status
    heartbeat_ms: int = 100
    miss_threshold: int = 3
    handshake_timeout_ms: int = 1000
    read_timeout_ms: int = 3000
    # A write unanswered this long is failed with `timeout` (the client retries it by request id).
    write_timeout_ms: int = 10_000
    read_wait_ms: int = 1000  # how long one replica may wait for min_seq before we try another
    # a read unanswered this long is sent to a second replica too, first answer wins (0: off)
    read_hedge_ms: int = 20
    # once a majority answered the handshake, wait this long for the rest before fencing
    startup_wait_ms: int = 300
    backoff_max_ms: int = 1000
    history_writes: int = 100_000  # recent-write buffer used to replay a returning replica's gap
    history_bytes: int = 64 << 20
    send_queue_bytes: int = 16 << 20  # past this a replica is taken out and catches up later
    metrics_port: int | None = None
    # after sending, poll without sleeping this long for the replies (busypoll.py; 0: off)
    busy_poll_us: int = 50
    # the same under light load (a few writes in flight): spans a replica's fsync
    busy_poll_light_us: int = 400

    def validate(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}")
        if not self.replicas:
            raise ValueError("no replicas configured")
        ids = [r.id for r in self.replicas]
        if len(set(ids)) != len(ids):
            raise ValueError("replica ids must be unique")
        if not self.insecure and not self.secret_file:
            raise ValueError("give a secret file or --insecure-no-auth")
        if self.insecure and self.listen[0] not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("--insecure-no-auth is for loopback only")
        if self.heartbeat_ms <= 0 or self.miss_threshold <= 0:
            raise ValueError("heartbeat interval and miss threshold must be positive")
        if self.write_timeout_ms <= 0:
            raise ValueError("write timeout must be positive")
        if self.read_hedge_ms < 0:
            raise ValueError("read hedge delay must be 0 (off) or positive")
        if not (0 <= self.busy_poll_us <= 1_000_000 and 0 <= self.busy_poll_light_us <= 1_000_000):
            raise ValueError("busy poll must be 0..1000000 microseconds")


_SIMPLE_KEYS = (
    "policy", "secret_file", "insecure", "state_dir", "run_file", "heartbeat_ms",
    "miss_threshold", "handshake_timeout_ms", "read_timeout_ms", "write_timeout_ms", "read_wait_ms",
    "read_hedge_ms",
    "startup_wait_ms", "backoff_max_ms", "history_writes", "history_bytes",
    "send_queue_bytes", "metrics_port", "busy_poll_us", "busy_poll_light_us",
)


_REPLICA_KEYS = ("id", "host", "port")


class ConfigError(ValueError):
    """A configuration the coordinator cannot run with; the message is one line for the
    operator (`webfront coordinator` prints it and exits 2)."""


def _key_type(key: str) -> type:
    default = getattr(CoordinatorConfig(), key)
    if default is None:
        return int if key == "metrics_port" else str
    return type(default)


_TYPE_NAMES = {int: "an integer", str: "a string", bool: "true or false", list: "an array"}


def _checked(path: str | Path, where: str, key: str, value: object, want: type) -> object:
    # bool is an int in Python, and TOML's true is not a port number
    if not isinstance(value, want) or (want is int and isinstance(value, bool)):
        raise ConfigError(f"{path}: {where}{key} must be {_TYPE_NAMES[want]}, not "
                          f"{value!r}")
    return value


def load_toml(path: str | Path) -> CoordinatorConfig:
    """The file's settings over the defaults. Raises ConfigError for a file that cannot be read
    or parsed, an unknown key, a value of the wrong type or an incomplete [[replicas]] entry."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(_SIMPLE_KEYS) - {"listen", "replicas"})
    if unknown:
        raise ConfigError(f"{path}: unknown key{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(unknown)} (known: listen, replicas, "
                          f"{', '.join(_SIMPLE_KEYS)})")
    config = CoordinatorConfig()
    for key in _SIMPLE_KEYS:
        if key in data:
            setattr(config, key, _checked(path, "", key, data[key], _key_type(key)))
    if "listen" in data:
        config.listen = parse_address(str(_checked(path, "", "listen", data["listen"], str)))
    replicas = _checked(path, "", "replicas", data.get("replicas", []), list)
    for n, item in enumerate(replicas, 1):
        where = f"[[replicas]] entry {n}: "
        if not isinstance(item, dict):
            raise ConfigError(f"{path}: {where}want a table with id, host and port")
        missing = [k for k in _REPLICA_KEYS if k not in item]
        extra = sorted(set(item) - set(_REPLICA_KEYS))
        if missing or extra:
            raise ConfigError(f"{path}: {where}" + "; ".join(
                ([f"missing {', '.join(missing)}"] if missing else [])
                + ([f"unknown {', '.join(extra)}"] if extra else [])))
        rid = item["id"]
        if isinstance(rid, bool) or not isinstance(rid, (str, int)):
            raise ConfigError(f"{path}: {where}id must be a string or an integer")
        config.replicas.append(ReplicaConfig(
            str(rid), str(_checked(path, where, "host", item["host"], str)),
            int(_checked(path, where, "port", item["port"], int))))
    return config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML file; flags given here override it")
    parser.add_argument("--listen", help="client address HOST:PORT (default 127.0.0.1:7000)")
    parser.add_argument(
        "--replica", action="append", default=[], metavar="ID=HOST:PORT",
        help="a replica (repeat for each); given, they replace the file's [[replicas]]",
    )
    parser.add_argument("--policy", choices=POLICIES)
    parser.add_argument("--secret-file")
    parser.add_argument("--insecure-no-auth", action="store_true", default=None)
    parser.add_argument("--state-dir",
                        help="where the coordinator keeps its epoch history and membership")
    parser.add_argument("--run-file", help="local cluster run file (replica pids for status)")
    parser.add_argument("--heartbeat-ms", type=int)
    parser.add_argument("--miss-threshold", type=int)
    parser.add_argument("--read-timeout-ms", type=int)
    parser.add_argument("--read-hedge-ms", type=int,
                        help="send a read unanswered this long to a second replica as well; "
                             "the first answer wins (default 20; 0: off)")
    parser.add_argument("--write-timeout-ms", type=int,
                        help="fail a write unanswered this long with `timeout` (default 10000)")
    parser.add_argument("--send-queue-bytes", type=int)
    parser.add_argument("--history-writes", type=int,
                        help="recent-write buffer size (writes) for replaying a short gap")
    parser.add_argument("--history-bytes", type=int)
    parser.add_argument("--startup-wait-ms", type=int)
    parser.add_argument("--metrics-port", type=int)
    parser.add_argument("--busy-poll-us", type=int,
                        help="after sending, poll without sleeping this long for the replies "
                             "(default 50; 0: off)")
    parser.add_argument("--busy-poll-light-us", type=int,
                        help="the same with at most a few writes in flight, long enough to "
                             "span a replica's fsync (default 400)")
    parser.add_argument("--log-level", default="INFO")


def from_args(args: argparse.Namespace) -> CoordinatorConfig:
    """The file (if any), then the flags over it: a flag replaces the file's value, and
    `--replica` flags, if any, replace the whole [[replicas]] list (adding to it would make a
    replica moved to another address, given in both, a duplicate id). Raises ValueError
    (ConfigError) with a one-line message."""
    config = load_toml(args.config) if args.config else CoordinatorConfig()
    if args.listen:
        config.listen = parse_address(args.listen)
    if args.replica:
        config.replicas = []
    for spec in args.replica:
        rid, sep, address = spec.partition("=")
        if not sep:
            raise ValueError(f"bad --replica {spec!r}: want ID=HOST:PORT")
        host, port = parse_address(address)
        config.replicas.append(ReplicaConfig(rid, host, port))
    if args.insecure_no_auth:
        config.insecure = True
    for key in ("policy", "secret_file", "state_dir", "run_file", "heartbeat_ms",
                "miss_threshold", "read_timeout_ms", "read_hedge_ms", "write_timeout_ms",
                "send_queue_bytes",
                "history_writes",
                "history_bytes", "startup_wait_ms", "metrics_port", "busy_poll_us",
                "busy_poll_light_us"):
        value = getattr(args, key)
        if value is not None:
            setattr(config, key, value)
    config.validate()
    return config
