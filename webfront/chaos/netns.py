"""A replica in its own network namespace, joined to the host by a veth pair.

    host (root namespace)                      namespace wfc<tag>n<i>
    veth wfc<tag>h<i>  10.200.T.(4i+1)/30 <----> veth wfc<tag>n<i>  10.200.T.(4i+2)/30
                                                 replica_server --listen 10.200.T.(4i+2):PORT

Traffic stays between the host end and our own namespace: the /30 is private and nothing routes
it further. A partition is `ip link set <host end> down` (both directions cut at once); healing
sets it up again. Delay and loss use `tc netem` on the host end when the kernel has it.
Needs root and `ip netns`; `available()` says why not otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess

_netem_cache: tuple[bool, str] | None = None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=check)


def available() -> tuple[bool, str]:
    """(True, "") when namespaces can be made here, else (False, the reason)."""
    if os.name != "posix" or not shutil.which("ip"):
        return False, "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return False, "network namespaces need root"
    probe = f"wfcprobe{os.getpid() % 100000}"
    try:
        made = _ip("netns", "add", probe, check=False)
        if made.returncode != 0:
            return False, f"`ip netns add` failed: {made.stderr.strip()}"
        return True, ""
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"`ip netns` unusable: {exc}"
    finally:
        _ip("netns", "del", probe, check=False)


def netem_available() -> tuple[bool, str]:
    """Whether `tc qdisc ... netem` works (the kernel module may be missing)."""
    global _netem_cache
    if _netem_cache is not None:
        return _netem_cache
    if not shutil.which("tc"):
        _netem_cache = (False, "the `tc` command is not installed")
        return _netem_cache
    link = NetnsLink(tag=os.getpid() % 250, index=63)
    try:
        link.create()
        done = subprocess.run(["tc", "qdisc", "add", "dev", link.host_dev, "root", "netem",
                               "delay", "1ms"], capture_output=True, check=False, text=True, timeout=10)
        _netem_cache = (done.returncode == 0, done.stderr.strip() or "")
        if done.returncode != 0:
            _netem_cache = (False, f"tc netem unavailable: {done.stderr.strip()}")
    except (OSError, subprocess.SubprocessError) as exc:
        _netem_cache = (False, f"tc netem unavailable: {exc}")
    finally:
        link.destroy()
    return _netem_cache


class NetnsLink:
    """One namespace and its veth pair. `create()` then `wrap(cmd)`; `destroy()` always."""

    def __init__(self, tag: int, index: int, net: str = "10.200", prefix: str = "wfc") -> None:
        """`net` is the first two octets of the private /16 the /30s are cut from and `prefix`
        starts the namespace and device names: the chaos suite and tests/ops use different
        ones so that they can run at the same time."""
        assert 0 <= index < 64 and 0 <= tag < 256 and len(prefix) <= 5
        self.tag, self.index = tag, index
        self.name = f"{prefix}{tag}n{index}"
        self.host_dev = f"{prefix}{tag}h{index}"
        self.ns_dev = f"{prefix}{tag}v{index}"
        self.host_ip = f"{net}.{tag}.{4 * index + 1}"
        self.ns_ip = f"{net}.{tag}.{4 * index + 2}"
        self.created = False

    def create(self) -> None:
        self.destroy()  # leftovers of a killed earlier run with the same tag
        _ip("netns", "add", self.name)
        self.created = True
        _ip("link", "add", self.host_dev, "type", "veth", "peer", "name", self.ns_dev)
        _ip("link", "set", self.ns_dev, "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_dev)
        _ip("link", "set", self.host_dev, "up")
        _ip("-n", self.name, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_dev)
        _ip("-n", self.name, "link", "set", self.ns_dev, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")

    def wrap(self, argv: list[str]) -> list[str]:
        """The command line that runs argv inside the namespace (exec: same pid)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def cut(self) -> None:
        _ip("link", "set", self.host_dev, "down")

    def heal(self) -> None:
        _ip("link", "set", self.host_dev, "up")

    def netem(self, *spec: str) -> None:
        subprocess.run(["tc", "qdisc", "replace", "dev", self.host_dev, "root", "netem", *spec],
                       check=True, capture_output=True, timeout=10)

    def clear_netem(self) -> None:
        subprocess.run(["tc", "qdisc", "del", "dev", self.host_dev, "root"],
                       capture_output=True, check=False, timeout=10)

    def destroy(self) -> None:
        _ip("link", "del", self.host_dev, check=False)
        _ip("netns", "del", self.name, check=False)
        self.created = False
