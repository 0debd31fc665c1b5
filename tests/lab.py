"""A classroom on one machine: a bridge, a server and N clients, each in its own network
namespace, joined by veth pairs whose ports are rate-limited with tbf (both ways); packet loss
by nftables `numgen random` drops (this kernel has no netem). Built and torn down by the test or
benchmark that uses it (Lab is a context manager; teardown also runs after a failure).

    with Lab(clients=3, rate="200mbit") as lab:
        lab.run("server", ["nginx", ...])           # a command inside a namespace
        lab.address("c1")                            # 10.77.0.11
"""

import contextlib
import os
import signal
import subprocess

SUBNET = "10.77.0"


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def remove_stale_labs():
    """The namespaces of labs whose process was killed (kill -9 leaves them)."""
    names = _sh("ip", "netns", "list", check=False).stdout.decode().split()
    for name in names:
        owner = name.split("-")[0]
        if not (owner.startswith("dl") and owner[2:].isdigit()) or "-" not in name:
            continue
        if os.path.exists(f"/proc/{owner[2:]}"):
            continue
        for pid in _sh("ip", "netns", "pids", name, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)
        _sh("ip", "netns", "del", name, check=False)


def _sh(*argv, check=True, **kw):
    return subprocess.run([str(a) for a in argv], check=check, capture_output=True, **kw)


class Lab:
    def __init__(self, clients: int, rate: str = "1gbit", prefix: str | None = None):
        self.prefix = prefix or f"dl{os.getpid()}"
        self.hosts = ["server"] + [f"c{n}" for n in range(1, clients + 1)]
        self.rate = rate
        self.bridge_ns = f"{self.prefix}-br"
        self._made = []

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def address(self, host: str) -> str:
        return f"{SUBNET}.1" if host == "server" else f"{SUBNET}.{10 + int(host[1:])}"

    def __enter__(self):
        remove_stale_labs()
        # SIGTERM (timeout, CI) unwinds like Ctrl-C, so that the teardown runs
        self._old_handler = signal.signal(signal.SIGTERM, _interrupt)
        try:
            self._build()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc):
        try:
            self.teardown()
        finally:
            signal.signal(signal.SIGTERM, self._old_handler)

    def _netns(self, name):
        _sh("ip", "netns", "add", name)
        self._made.append(name)
        _sh("ip", "-n", name, "link", "set", "lo", "up")

    def _build(self):
        self._netns(self.bridge_ns)
        _sh("ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        _sh("ip", "-n", self.bridge_ns, "link", "set", "br0", "type", "bridge",
            "mcast_snooping", "0")
        _sh("ip", "-n", self.bridge_ns, "link", "set", "br0", "up")
        for n, host in enumerate(self.hosts):
            ns = self.ns(host)
            self._netns(ns)
            port = f"p{n}"
            _sh("ip", "link", "add", port, "netns", self.bridge_ns, "type", "veth", "peer",
                "name", "eth0", "netns", ns)
            _sh("ip", "-n", self.bridge_ns, "link", "set", port, "master", "br0", "up")
            _sh("ip", "-n", ns, "addr", "add", f"{self.address(host)}/24", "brd", "+", "dev",
                "eth0")
            _sh("ip", "-n", ns, "link", "set", "eth0", "up")
            _sh("ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
            self.limit(host, self.rate)

    def limit(self, host: str, rate: str):
        """Both directions of host's port at rate (tbf)."""
        n = self.hosts.index(host)
        for ns, dev in ((self.ns(host), "eth0"), (self.bridge_ns, f"p{n}")):
            _sh("ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, "root", "tbf",
                "rate", rate, "burst", "256kb", "latency", "100ms")

    def lose(self, host: str, percent: int):
        """Drop percent of the UDP and TCP packets host receives (nftables numgen random)."""
        ns = self.ns(host)
        rules = ("table inet lab {\n chain input {\n  type filter hook input priority 0;\n"
                 f"  meta l4proto {{ udp, tcp }} numgen random mod 100 < {percent} drop\n }}\n}}\n")
        _sh("ip", "netns", "exec", ns, "nft", "-f", "-", input=rules.encode())

    def run(self, host: str, argv, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.ns(host), *map(str, argv)],
                              capture_output=True, **kw)

    def start(self, host: str, argv, **kw) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.ns(host), *map(str, argv)], **kw)

    def pids(self, host: str) -> list[int]:
        """The processes still running in host's namespace."""
        return [int(p) for p in _sh("ip", "netns", "pids", self.ns(host), check=False).stdout.split()]

    def teardown(self):
        for ns in reversed(self._made):
            # every process left in the namespace goes with it
            pids = _sh("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            _sh("ip", "netns", "del", ns, check=False)
        self._made = []
