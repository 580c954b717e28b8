"""The chaos harness's private network: one bridge in a namespace of its own, one namespace per
node, nftables rules for faults.

Everything this module creates is named with the prefix `okc-` (namespaces) and lives only inside
those namespaces: the bridge `okbr0` sits in the namespace `okc-br`, each node's veth pair has one
end in the node's namespace and the other on that bridge, and the subnet 10.99.0.0/24 is routed
nowhere else. The root namespace gets no interface, no address and no rule. Deleting the
namespaces deletes the veths and the bridge with them, which is what `cleanup()` does.

Faults are nftables rules in a node's own namespace (table `inet chaos`): the kernel here has no
netem, so loss is `numgen random mod 100 < N drop` and a partition is a drop of the subnet.
"""
import ctypes
import os
import signal
import subprocess
import time

PREFIX = "okc-"
BRIDGE_NS = PREFIX + "br"
BRIDGE = "okbr0"
SUBNET = "10.99.0.0/24"
CLONE_NEWNET = 0x40000000


def sh(*argv, check=True, capture=False, timeout=20):
    """Runs a short command; returns its stdout (str) when capture, else the CompletedProcess."""
    r = subprocess.run(list(argv), stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), r.returncode, r.stderr.strip()))
    return r.stdout if capture else r


def available():
    """None when this process can build the lab, else the reason it cannot."""
    if os.geteuid() != 0:
        return "not root (ip netns needs CAP_SYS_ADMIN)"
    try:
        r = subprocess.run(["ip", "netns", "list"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "`ip netns` is unavailable: %s" % e
    if r.returncode != 0:
        return "`ip netns list` failed: %s" % r.stderr.strip()
    probe = PREFIX + "probe%d" % os.getpid()
    r = subprocess.run(["ip", "netns", "add", probe], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True, timeout=10)
    if r.returncode != 0:
        return "`ip netns add` failed: %s" % r.stderr.strip()
    subprocess.run(["ip", "netns", "del", probe], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return None


def our_namespaces():
    out = sh("ip", "netns", "list", capture=True, check=False) or ""
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def cleanup():
    """Kills every process inside an okc- namespace and deletes those namespaces (veths and the
    bridge go with them). Safe to call any number of times, also when nothing exists."""
    names = our_namespaces()
    for ns in names:
        pids = (sh("ip", "netns", "pids", ns, capture=True, check=False) or "").split()
        for p in pids:
            if p == str(os.getpid()):
                continue  # the harness itself lives in the client namespace
            try:
                os.kill(int(p), signal.SIGCONT)  # a stopped process dies only once it runs
                os.kill(int(p), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
    for ns in names:
        for _ in range(20):
            if sh("ip", "netns", "del", ns, check=False).returncode == 0:
                break
            time.sleep(0.1)
    return names


class Lab:
    """The bridge namespace plus one namespace per node; `enter_client()` moves this process
    (every thread started afterwards, and every child) into the client's namespace, so the harness
    reaches the nodes' addresses without any route in the root namespace."""

    def __init__(self):
        self.nodes = {}  # short name -> ip
        sh("ip", "netns", "add", BRIDGE_NS)
        sh("ip", "-n", BRIDGE_NS, "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "-n", BRIDGE_NS, "link", "set", BRIDGE, "up")
        sh("ip", "-n", BRIDGE_NS, "link", "set", "lo", "up")

    @staticmethod
    def ns(name):
        return PREFIX + name

    def add(self, name, ip):
        ns = self.ns(name)
        sh("ip", "netns", "add", ns)
        inner, outer = "okv-" + name, "okb-" + name
        sh("ip", "link", "add", inner, "netns", ns, "type", "veth", "peer", "name", outer, "netns", BRIDGE_NS)
        sh("ip", "-n", BRIDGE_NS, "link", "set", outer, "master", BRIDGE)
        sh("ip", "-n", BRIDGE_NS, "link", "set", outer, "up")
        sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", inner)
        sh("ip", "-n", ns, "link", "set", inner, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "netns", "exec", ns, "nft", "add", "table", "inet", "chaos")
        for chain, hook in (("in", "input"), ("out", "output")):
            sh("ip", "netns", "exec", ns, "nft", "add", "chain", "inet", "chaos", chain,
               "{ type filter hook %s priority 0; policy accept; }" % hook)
        self.nodes[name] = ip

    def enter_client(self, name):
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open("/run/netns/" + self.ns(name), os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into " + self.ns(name))
        finally:
            os.close(fd)

    def argv(self, name, argv):
        """argv run inside node `name`'s namespace (ip netns exec execs it: same pid)."""
        return ["ip", "netns", "exec", self.ns(name)] + list(argv)

    # Faults: rules in the node's own namespace. Loopback stays open.
    def _nft(self, name, *rule):
        sh("ip", "netns", "exec", self.ns(name), "nft", *rule)

    def drop_in(self, name, src=SUBNET):
        self._nft(name, "add", "rule", "inet", "chaos", "in", "iifname", "!=", "lo", "ip", "saddr", src, "drop")

    def drop_out(self, name, dst=SUBNET):
        self._nft(name, "add", "rule", "inet", "chaos", "out", "oifname", "!=", "lo", "ip", "daddr", dst, "drop")

    def loss(self, name, percent):
        for chain, dev in (("in", "iifname"), ("out", "oifname")):
            self._nft(name, "add", "rule", "inet", "chaos", chain, dev, "!=", "lo",
                      "numgen", "random", "mod", "100", "<", str(int(percent)), "drop")

    def heal(self, name):
        for chain in ("in", "out"):
            self._nft(name, "flush", "chain", "inet", "chaos", chain)
