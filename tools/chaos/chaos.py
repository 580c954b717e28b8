#!/usr/bin/env python3
"""Chaos harness for oklog: a real 3 ingest + 3 store cluster (replication factor 2), each node in
its own network namespace on a private bridge, under acknowledged and plain writers, with one
fault per scenario, probed by queries all along and checked at the end.

    python3 tools/chaos/chaos.py --oklog build/oklog --scenarios short --out /tmp/chaos
    python3 tools/chaos/chaos.py --scenarios full --out docs/chaos
    python3 tools/chaos/chaos.py --scenarios kill9,partition

Exit status: 0 when every scenario met its targets (no acknowledged record lost, no duplicate, no
200 answer missing a record acknowledged before it was asked), 1 when one did not, 2 on a harness
error, 77 when this machine cannot run it (not root, or no `ip netns`). See docs/CHAOS.md.
"""
import argparse
import atexit
import fcntl
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # CTest runs this from the source tree: leave no __pycache__ there
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
API, FAST, DURABLE, BULK, CLUSTER = 7650, 7651, 7652, 7653, 7659
INGESTS = [("i1", "10.99.0.11"), ("i2", "10.99.0.12"), ("i3", "10.99.0.13")]
STORES = [("s1", "10.99.0.21"), ("s2", "10.99.0.22"), ("s3", "10.99.0.23")]
SPARES = [("s4", "10.99.0.24")]  # stores a scenario starts later (a join)
CLIENT = ("cl", "10.99.0.2")
SEED = INGESTS[0][1]
QUERY_Q = "ack "  # matches the acknowledged writers' records only
PAD = "the quick brown fox jumps over the lazy dog"
LOCK = "/run/oklog-chaos.lock"

# ---------------------------------------------------------------------------------------------
# Scenarios. Times in seconds: healthy warm-up, fault window, healthy after the heal, then the
# writers stop and the checker waits up to `settle` for the cluster to converge.


class Timing:
    def __init__(self, warm, fault, post, settle):
        self.warm, self.fault, self.post, self.settle = warm, fault, post, settle


SHORT = Timing(warm=8, fault=10, post=8, settle=30)
FULL = Timing(warm=15, fault=30, post=15, settle=60)

# name -> (description, target store, fault start(lab, cluster), heal(lab, cluster))
SCENARIOS = {}


def scenario(name, desc):
    def reg(cls):
        SCENARIOS[name] = cls(name, desc)
        return cls
    return reg


class Fault:
    target = "s2"
    flags = ()   # extra flags for every node of the scenario
    gone = ()    # nodes the fault removes for good (left out of the final checks)
    joins = ()   # spare stores the fault starts
    repair_delay = 60.0  # the nodes' -store.repair-delay (the default unless flags say)
    # A partition: after the heal every backlog flows within 5 s and answers are full within
    # 10 s (judged in the full set; a figure in the short one, which CI runs on a loaded machine).
    heal_targets = False
    exact_copies = False  # no record on more than N stores at the end (--exact-copies)

    def __init__(self, name, desc):
        self.name, self.desc = name, desc

    def start(self, lab, cluster):
        raise NotImplementedError

    def heal(self, lab, cluster):
        raise NotImplementedError


@scenario("kill9", "kill -9 one store, start it again (same data dir) at the heal")
class Kill9(Fault):
    def start(self, lab, cluster):
        cluster.nodes[self.target].kill9()

    def heal(self, lab, cluster):
        cluster.nodes[self.target].start()


@scenario("stop", "SIGSTOP one store for the fault window, then SIGCONT")
class Stop(Fault):
    def start(self, lab, cluster):
        cluster.nodes[self.target].signal(signal.SIGSTOP)

    def heal(self, lab, cluster):
        cluster.nodes[self.target].signal(signal.SIGCONT)


@scenario("partition", "one store cut off both ways (nftables drop of the subnet), then healed")
class Partition(Fault):
    heal_targets = True

    def start(self, lab, cluster):
        lab.drop_in(self.target)
        lab.drop_out(self.target)

    def heal(self, lab, cluster):
        lab.heal(self.target)


@scenario("oneway", "one store's outgoing packets dropped (it hears the others, they do not hear it)")
class OneWay(Fault):
    heal_targets = True

    def start(self, lab, cluster):
        lab.drop_out(self.target)

    def heal(self, lab, cluster):
        lab.heal(self.target)


@scenario("restart", "SIGTERM one store (clean stop), start it again at the heal")
class Restart(Fault):
    def start(self, lab, cluster):
        cluster.nodes[self.target].term()

    def heal(self, lab, cluster):
        cluster.nodes[self.target].start()


@scenario("loss", "20% packet loss both ways on every store (nftables numgen)")
class Loss(Fault):
    target = "s1+s2+s3"

    def start(self, lab, cluster):
        for s, _ in STORES:
            lab.loss(s, 20)

    def heal(self, lab, cluster):
        for s, _ in STORES:
            lab.heal(s)


@scenario("kill9-ingest", "kill -9 one ingest node, start it again at the heal")
class Kill9Ingest(Kill9):
    target = "i2"


MINORITY = ["i3", "s3"]


@scenario("bridge", "the bridge split: {i3, s3} cut off from {i1, i2, s1, s2} (the client reaches both)")
class Bridge(Fault):
    heal_targets = True

    target = "+".join(MINORITY)

    def start(self, lab, cluster):
        majority = [ip for name, ip in INGESTS + STORES if name not in MINORITY]
        for name in MINORITY:
            for ip in majority:
                lab.drop_in(name, ip)
                lab.drop_out(name, ip)

    def heal(self, lab, cluster):
        for name in MINORITY:
            lab.heal(name)


@scenario("diskfull", "one store's -store.path (a 64 MiB tmpfs) filled to the last byte, then freed")
class DiskFull(Fault):
    target = "s3"
    tmpfs_mb = 64
    tmpfs_dir = "store"

    def start(self, lab, cluster):
        path = os.path.join(cluster.nodes[self.target].dir, self.tmpfs_dir, "chaos-filler")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for size in (1 << 20, 4096, 1):  # whole MiB, then the last pages and bytes
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError:
                    pass
        finally:
            os.close(fd)

    def heal(self, lab, cluster):
        os.unlink(os.path.join(cluster.nodes[self.target].dir, self.tmpfs_dir, "chaos-filler"))


@scenario("diskfull-ingest", "one ingester's -ingest.path (a 64 MiB tmpfs) filled to the last byte, then freed")
class DiskFullIngest(DiskFull):
    target = "i1"
    tmpfs_dir = "ingest"


@scenario("kill9-two", "kill -9 two stores at once (RF 2: some records have no live copy; answers must say so)")
class Kill9Two(Fault):
    target = "s2+s3"

    def start(self, lab, cluster):
        for n in ("s2", "s3"):
            cluster.nodes[n].kill9()

    def heal(self, lab, cluster):
        for n in ("s2", "s3"):
            cluster.nodes[n].start()


@scenario("kill9-lost", "kill -9 one store for good: its copies are repaired onto the two others")
class Kill9Lost(Fault):
    repair_delay = 10.0
    flags = ("-store.repair-delay", "10s")
    gone = ("s2",)

    def start(self, lab, cluster):
        node = cluster.nodes[self.target]
        self.bytes = store_bytes(node)
        node.kill9()

    def heal(self, lab, cluster):
        pass  # it stays dead


@scenario("join", "a fourth store joins the loaded cluster: it takes its share, no record keeps a third copy")
class Join(Fault):
    target = "s4"
    repair_delay = 10.0
    # Half-second placement buckets, so that a minute of records is enough buckets to even out.
    flags = ("-store.repair-delay", "10s", "-store.placement-bucket", "500ms", "-store.rebalance-settle", "10s")
    joins = ("s4",)

    def start(self, lab, cluster):
        self.bytes = max(store_bytes(cluster.nodes[n]) for n, _ in STORES)
        cluster.join(self.target)

    def heal(self, lab, cluster):
        pass


def store_bytes(node):
    """Bytes of a store's segment files."""
    total = 0
    for root, _dirs, files in os.walk(os.path.join(node.dir, "store")):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files if f.endswith(".seg"))
    return total


REPAIR_RATE = 16 << 20  # the nodes' -store.repair-rate (the default)

SETS = {"short": ["kill9", "stop", "partition", "oneway", "restart"],
        "full": ["kill9", "stop", "partition", "oneway", "restart", "loss", "kill9-ingest", "bridge",
                 "diskfull", "diskfull-ingest", "kill9-two", "kill9-lost", "join"]}

# ---------------------------------------------------------------------------------------------
# HTTP from the client namespace.


class Answer:
    def __init__(self, status=None, body=b"", error=None, headers=None):
        self.status, self.body, self.error, self.headers = status, body, error, headers or {}


def http_get(ip, path, timeout=10.0, method="GET"):
    conn = http.client.HTTPConnection(ip, API, timeout=timeout)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        body = r.read()  # IncompleteRead when a chunked answer is cut off
        return Answer(r.status, body, None, dict(r.getheaders()))
    except http.client.IncompleteRead as e:
        return Answer(None, e.partial, "cut off after %d bytes" % len(e.partial))
    except (OSError, http.client.HTTPException) as e:
        return Answer(None, b"", "%s: %s" % (type(e).__name__, e))
    finally:
        conn.close()


def query_path(local=False):
    return ("/store/_query" if local else "/store/query") + "?q=" + QUERY_Q.replace(" ", "%20")


def parse_keys(body):
    """Record keys (writer, number) of a query answer, with repeats; lines are 'ULID record'."""
    return [(w.decode(), n) for w, n in parse_tagged(body, b"ack")]


def parse_tagged(body, tag):
    """(writer, number) of each line 'ULID [TOPIC] TAG WRITER NUMBER ...' (static topic mode puts
    the topic first), with repeats."""
    out = []
    for line in body.split(b"\n"):
        parts = line.split(b" ", 5)
        for i in (1, 2):
            if len(parts) >= i + 3 and parts[i] == tag:
                try:
                    out.append((parts[i + 1], int(parts[i + 2])))
                except ValueError:
                    pass
                break
    return out


# ---------------------------------------------------------------------------------------------
# The cluster.


class Node:
    def __init__(self, lab, oklog, name, ip, mode, data_dir, log_dir, extra=()):
        self.lab, self.oklog, self.name, self.ip, self.mode = lab, oklog, name, ip, mode
        self.dir = os.path.join(data_dir, name)
        self.log_dir = log_dir
        self.proc = None
        self.starts = 0
        self.extra = list(extra)
        os.makedirs(self.dir, exist_ok=True)

    def args(self):
        a = [self.oklog, self.mode,
             "-api", "%s:%d" % (self.ip, API), "-ingest.fast", "%s:%d" % (self.ip, FAST),
             "-ingest.durable", "%s:%d" % (self.ip, DURABLE), "-ingest.bulk", "%s:%d" % (self.ip, BULK),
             "-cluster", "%s:%d" % (self.ip, CLUSTER), "-ports.file", os.path.join(self.dir, "ports"),
             "-cluster.preset", "local",
             "-ingest.path", os.path.join(self.dir, "ingest"), "-store.path", os.path.join(self.dir, "store"),
             "-ingest.segment-flush-age", "200ms", "-ingest.segment-pending-timeout", "3s",
             "-store.segment-replication-factor", "2",
             # The disk faults use 64 MiB tmpfs mounts: floors that fit them (the defaults are 100 MiB).
             "-ingest.min-free-bytes", str(8 << 20), "-store.min-free-bytes", str(8 << 20)] + self.extra
        if self.ip != SEED:
            a += ["-peer", "%s:%d" % (SEED, CLUSTER)]
        return a

    def start(self):
        self.starts += 1
        log = open(os.path.join(self.log_dir, "%s-%d.log" % (self.name, self.starts)), "wb")
        self.proc = subprocess.Popen(self.lab.argv(self.name, self.args()), stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        ALL_PROCS.add(self.proc)

    def check_running(self):
        """Notes a node that died by itself (not by the fault)."""
        if self.proc and self.proc.poll() is not None and self.proc.returncode != -signal.SIGKILL:
            NOTES.append("%s exited by itself with %s; see %s" % (self.name, self.proc.returncode, self.log_dir))

    def wait_healthy(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited %s at start; see %s" % (self.name, self.proc.returncode, self.log_dir))
            a = http_get(self.ip, "/health", timeout=1)
            if a.status == 200 and a.body.startswith(b"OK\n"):
                return
            time.sleep(0.1)
        raise RuntimeError("%s not healthy after %ds" % (self.name, timeout))

    def signal(self, sig):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill9(self):
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait(10)

    def term(self, timeout=30):
        """SIGTERM; the exit status (a clean stop exits 0), or None when it had to be killed."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            rc = None
        if rc != 0:
            NOTES.append("%s: SIGTERM ended it with %s (a clean stop exits 0)" % (self.name, rc))
        return rc


class Cluster:
    def __init__(self, lab, oklog, data_dir, log_dir, flags=()):
        self.nodes = {}
        self.spares = {}
        for name, ip in INGESTS:
            self.nodes[name] = Node(lab, oklog, name, ip, "ingest", data_dir, log_dir, flags)
        for name, ip in STORES:
            self.nodes[name] = Node(lab, oklog, name, ip, "store", data_dir, log_dir, flags)
        for name, ip in SPARES:
            self.spares[name] = Node(lab, oklog, name, ip, "store", data_dir, log_dir, flags)

    def join(self, name):
        node = self.spares.pop(name)
        node.start()
        node.wait_healthy()
        self.nodes[name] = node

    def stores(self):
        return [n for n in self.nodes.values() if n.mode == "store"]

    def start(self):
        first = self.nodes[INGESTS[0][0]]
        first.start()
        first.wait_healthy()
        for n in self.nodes.values():
            if n is not first:
                n.start()
        for n in self.nodes.values():
            n.wait_healthy()
        deadline = time.time() + 30
        while time.time() < deadline:
            views = membership(self)
            if all(v is not None and len(v) == len(self.nodes) for v in views.values()):
                return
            time.sleep(0.2)
        raise RuntimeError("the cluster did not converge on %d alive members: %s" % (len(self.nodes), views))

    def stop(self):
        for n in self.nodes.values():
            n.kill9()


def membership(cluster):
    """node -> frozenset of alive member addresses it lists (None when it does not answer)."""
    views = {}
    for name, n in cluster.nodes.items():
        a = http_get(n.ip, "/cluster", timeout=2)
        if a.status != 200:
            views[name] = None
            continue
        try:
            j = json.loads(a.body)
            views[name] = frozenset(m.get("addr") or m.get("name") for m in j.get("members", [])
                                    if m.get("state") == "alive")
        except ValueError:
            views[name] = None
    return views


# ---------------------------------------------------------------------------------------------
# Workload.

ALL_PROCS = set()
NOTES = []  # what a scenario saw that is no target but worth a line under its table


class Chunk:
    __slots__ = ("writer", "first", "count", "t0", "t1", "rc")

    def __init__(self, writer, first, count, t0):
        self.writer, self.first, self.count, self.t0, self.t1, self.rc = writer, first, count, t0, None, None


class AckedWriter(threading.Thread):
    """Feeds `oklog forward -bulk` (to every ingest node) one chunk per process; a chunk is
    acknowledged when its process exits 0. Paced: a chunk starts at most every `interval`."""

    def __init__(self, run, name, chunk, interval, max_chunks):
        super().__init__(daemon=True)
        self.run_, self.wname, self.chunk, self.interval, self.max_chunks = run, name, chunk, interval, max_chunks
        self.chunks = []
        self.lock = threading.Lock()

    def run(self):
        n = 0
        argv = [self.run_.oklog, "forward", "-bulk"] + ["%s:%d" % (ip, BULK) for _, ip in INGESTS]
        for _ in range(self.max_chunks):
            if self.run_.stop_writers.is_set():
                break
            t0 = time.time()
            c = Chunk(self.wname, n, self.chunk, self.run_.now())
            with self.lock:
                self.chunks.append(c)
            data = "".join("ack %s %07d %s\n" % (self.wname, i, PAD) for i in range(n, n + self.chunk)).encode()
            n += self.chunk
            p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            ALL_PROCS.add(p)
            try:
                _, err = p.communicate(data, timeout=90)
                c.rc = p.returncode
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                c.rc = "timeout"
            ALL_PROCS.discard(p)
            c.t1 = self.run_.now()
            left = self.interval - (time.time() - t0)
            if left > 0:
                time.sleep(left)

    def acked(self):
        with self.lock:
            return [c for c in self.chunks if c.rc == 0]


class PlainForwarder(threading.Thread):
    """One long `oklog forward` (fast port, every ingest node) fed `rate` lines/s; its records are
    not acknowledged, so the checker reports them as figures only."""

    def __init__(self, run, name, rate, max_lines):
        super().__init__(daemon=True)
        self.run_, self.wname, self.rate, self.max_lines = run, name, rate, max_lines
        self.sent = 0
        self.rc = None

    def run(self):
        argv = [self.run_.oklog, "forward"] + ["%s:%d" % (ip, FAST) for _, ip in INGESTS]
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ALL_PROCS.add(p)
        start = time.time()
        try:
            while self.sent < self.max_lines and not self.run_.stop_writers.is_set():
                due = min(self.max_lines, int((time.time() - start) * self.rate))
                if due > self.sent:
                    p.stdin.write("".join("fwd %s %07d %s\n" % (self.wname, i, PAD)
                                          for i in range(self.sent, due)).encode())
                    p.stdin.flush()
                    self.sent = due
                time.sleep(0.05)
            p.stdin.close()
            self.rc = p.wait(60)
        except (OSError, subprocess.TimeoutExpired) as e:
            self.rc = "error: %s" % e
            p.kill()
        ALL_PROCS.discard(p)


# ---------------------------------------------------------------------------------------------
# Probes.


class Probe:
    __slots__ = ("t0", "t1", "node", "status", "error", "records", "missing", "dups", "acked_before")


class Prober(threading.Thread):
    """Every `period` a query of every acknowledged record on a random node; each answer is checked
    at once against the records acknowledged before it was asked."""

    # Up to 8 in flight: probes stuck on a frozen node (each up to its 10 s timeout) must not
    # starve the others.
    def __init__(self, run, period=0.5, max_inflight=8):
        super().__init__(daemon=True)
        self.run_, self.period, self.sem = run, period, threading.Semaphore(max_inflight)
        self.probes = []
        self.lock = threading.Lock()
        self.rng = random.Random(7)

    def run(self):
        while not self.run_.stop_probes.is_set():
            if self.sem.acquire(timeout=self.period):
                node = self.rng.choice(list(self.run_.cluster.nodes.values()))
                threading.Thread(target=self.one, args=(node,), daemon=True).start()
            time.sleep(self.period)

    def one(self, node):
        try:
            p = Probe()
            p.node = node.name
            acked = self.run_.acked_chunks()
            p.t0 = self.run_.now()
            a = http_get(node.ip, query_path(), timeout=10)
            p.t1 = self.run_.now()
            p.status, p.error = a.status, a.error
            keys = parse_keys(a.body) if a.status in (200, 206) and a.error is None else []
            seen = set(keys)
            p.records, p.dups = len(keys), len(keys) - len(seen)
            p.acked_before = sum(c.count for c in acked)
            p.missing = 0
            if p.status is not None and p.error is None:
                for c in acked:
                    for i in range(c.first, c.first + c.count):
                        if (c.writer, i) not in seen:
                            p.missing += 1
            with self.lock:
                self.probes.append(p)
        finally:
            self.sem.release()


class CopySampler(threading.Thread):
    """Every `period`, each store's own records (node-local /store/_query); per acknowledged record
    the number of stores that answered holding it."""

    def __init__(self, run, period=2.0):
        super().__init__(daemon=True)
        self.run_, self.period = run, period
        self.samples = []  # (t, acked, under (<2 reachable copies), zero copies, stores answering)

    def sample(self, timeout=3):
        acked = self.run_.acked_chunks()
        t = self.run_.now()
        counts = {}
        answers = {}

        def ask(name):
            answers[name] = http_get(self.run_.cluster.nodes[name].ip, query_path(local=True), timeout=timeout)
        names = [n.name for n in self.run_.cluster.stores()]
        threads = [threading.Thread(target=ask, args=(name,), daemon=True) for name in names]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout + 5)
        answering = 0
        per_store = {}
        for name, a in list(answers.items()):
            if a.status != 200 or a.error:
                continue
            answering += 1
            keys = set(parse_keys(a.body))
            per_store[name] = len(keys)
            for k in keys:
                counts[k] = counts.get(k, 0) + 1
        under = zero = total = over = 0
        for c in acked:
            for i in range(c.first, c.first + c.count):
                n = counts.get((c.writer, i), 0)
                total += 1
                under += n < 2
                zero += n == 0
                over += n > 2
        s = (t, total, under, zero, answering, over, per_store)
        self.samples.append(s)
        return s

    def run(self):
        while not self.run_.stop_probes.is_set():
            t0 = time.time()
            self.sample()
            time.sleep(max(0.1, self.period - (time.time() - t0)))


# ---------------------------------------------------------------------------------------------
# One scenario.


class Run:
    def __init__(self, lab, oklog, fault, timing, out_dir, data_root, quick):
        self.lab, self.oklog, self.fault, self.timing = lab, oklog, fault, timing
        self.quick = quick
        self.out = os.path.join(out_dir, fault.name)
        os.makedirs(os.path.join(self.out, "logs"), exist_ok=True)
        self.data = tempfile.mkdtemp(prefix=fault.name + "-", dir=data_root)
        self.cluster = Cluster(lab, oklog, self.data, os.path.join(self.out, "logs"), fault.flags)
        self.mounts = []
        mb = getattr(fault, "tmpfs_mb", 0)
        if mb:
            where = os.path.join(self.cluster.nodes[fault.target].dir, fault.tmpfs_dir)
            os.makedirs(where, exist_ok=True)
            netlab.sh("mount", "-t", "tmpfs", "-o", "size=%dm" % mb, "oklog-chaos", where)
            self.mounts.append(where)
        self.stop_writers = threading.Event()
        self.stop_probes = threading.Event()
        self.t_origin = time.time()
        chunk = 500 if quick else 1000
        self.writers = [AckedWriter(self, "w%d" % i, chunk, 0.5, 400) for i in (1, 2)]
        self.plain = PlainForwarder(self, "f1", 1000, 1000 * 600)
        self.events = {}

    def now(self):
        return time.time() - self.t_origin

    def acked_chunks(self):
        return [c for w in self.writers for c in w.acked()]

    def log(self, msg):
        print("[%6.1fs %s] %s" % (self.now(), self.fault.name, msg), flush=True)

    def execute(self):
        t = self.timing
        self.log("starting 3 ingest + 3 store nodes")
        t0 = time.time()
        self.cluster.start()
        self.t_origin = time.time()
        self.log("cluster up in %.1f s: %d alive members everywhere" % (self.t_origin - t0, len(self.cluster.nodes)))
        self.prober, self.sampler = Prober(self), CopySampler(self)
        for th in self.writers + [self.plain, self.prober, self.sampler]:
            th.start()
        time.sleep(t.warm)
        self.events["fault"] = self.now()
        self.log("fault: %s (%s)" % (self.fault.desc, self.fault.target))
        self.fault.start(self.lab, self.cluster)
        time.sleep(t.fault)
        self.events["heal"] = self.now()
        self.log("heal")
        self.fault.heal(self.lab, self.cluster)
        for name in self.fault.target.split("+"):
            n = self.cluster.nodes[name]
            if n.proc.poll() is None and name not in self.fault.gone:
                n.wait_healthy()
        time.sleep(t.post)
        self.events["writers_stop"] = self.now()
        self.stop_writers.set()
        for w in self.writers + [self.plain]:
            w.join(120)
        self.events["writers_done"] = self.now()
        self.log("writers done: %d acknowledged records" % sum(c.count for c in self.acked_chunks()))
        self.stop_probes.set()
        self.prober.join(5)
        self.sampler.join(10)
        return self.settle()

    def settle(self):
        """Polls every node's answer and every store's copies until they are complete (or the
        settle time is out); the last poll is the verdict."""
        deadline = self.now() + self.timing.settle
        acked = self.acked_chunks()
        want = {(c.writer, i) for c in acked for i in range(c.first, c.first + c.count)}
        while True:
            final = {}
            for name, n in self.cluster.nodes.items():
                if name in self.fault.gone:
                    continue
                a = http_get(n.ip, query_path(), timeout=15)
                keys = parse_keys(a.body) if a.error is None else []
                seen = set(keys)
                final[name] = {"status": a.status, "error": a.error, "missing": len(want - seen),
                               "dups": len(keys) - len(seen), "plain": None}
            copies = self.sampler.sample(timeout=5)
            complete = all(f["status"] == 200 and f["missing"] == 0 for f in final.values())
            # A store lost for good or joining: also no third copy left, and (a join) even disks.
            settled = not (self.fault.gone or self.fault.joins or self.fault.exact_copies) or \
                copies[5] == 0 and (not self.fault.joins or balanced(copies[6]))
            if complete and copies[2] == 0 and settled or self.now() >= deadline:
                break
            time.sleep(2)
        self.events["settled"] = self.now()
        for n in self.cluster.nodes.values():
            n.check_running()
        views = {k: v for k, v in membership(self.cluster).items() if k not in self.fault.gone}
        # Plain forwarder: figures only (fast mode acknowledges nothing).
        a = http_get(self.cluster.nodes["i1"].ip, "/store/query?q=fwd%20", timeout=15)
        plain_keys = [n for _, n in parse_tagged(a.body, b"fwd")]
        return self.report(acked, final, copies, views, plain_keys)

    def report(self, acked, final, copies, views, plain_keys):
        ev = self.events
        probes = sorted(self.prober.probes, key=lambda p: p.t0)
        r = {"scenario": self.fault.name, "desc": self.fault.desc, "events": ev}
        r["timeline_probes"] = [(p.t0, p.t1, p.node, p.status, p.error, p.records, p.missing) for p in probes]
        r["acked"] = sum(c.count for c in acked)
        r["chunks"] = sum(len(w.chunks) for w in self.writers)
        r["chunks_failed"] = sum(1 for w in self.writers for c in w.chunks if c.rc != 0)
        r["lost"] = max(f["missing"] for f in final.values())
        r["dups"] = max(f["dups"] for f in final.values()) + sum(p.dups for p in probes)
        r["final"] = final
        r["probes"] = len(probes)
        r["probe_200"] = sum(1 for p in probes if p.status == 200 and p.error is None)
        r["probe_206"] = sum(1 for p in probes if p.status == 206 and p.error is None)
        r["probe_err"] = len(probes) - r["probe_200"] - r["probe_206"]
        r["bad_200"] = sum(1 for p in probes if p.status == 200 and p.error is None and p.missing > 0)
        r["bad_200_detail"] = [(round(p.t0, 2), p.node, p.missing, p.acked_before) for p in probes
                               if p.status == 200 and p.error is None and p.missing > 0][:10]
        r["under_end"] = copies[2]
        r["zero_end"] = copies[3]
        r["over_end"] = copies[5]
        full_at = None
        for s in self.sampler.samples:
            if s[0] >= ev["heal"] and s[2] == 0:
                full_at = s[0]
                break
        r["full_copies_after_heal"] = None if full_at is None else round(full_at - ev["heal"], 1)
        healthy = rate(acked, 0, ev["fault"])
        during = rate(acked, ev["fault"], ev["heal"])
        r["tput_healthy"], r["tput_fault"] = healthy, during
        r["tput_ratio"] = round(during / healthy, 2) if healthy else None
        pending = [c.t1 for w in self.writers for c in w.chunks if c.t0 < ev["heal"] and c.t1 is not None
                   and c.t1 >= ev["heal"]]
        r["backlog_after_heal"] = round(max(pending) - ev["heal"], 1) if pending else 0.0
        r["full_answers_after_heal"] = full_answers_after(r["timeline_probes"], ev["heal"], self.fault.gone)
        alive = [v for v in views.values()]
        r["membership_ok"] = all(v is not None for v in alive) and len(set(alive)) == 1 and \
            len(alive[0]) == len(self.cluster.nodes) - len(self.fault.gone)
        # Repair after a store lost for good, and a joining store's share, against the target
        # repair-delay + bytes to copy / repair rate + 30 s (from the kill, from the join).
        r["repair_s"] = r["repair_target_s"] = None
        if self.fault.gone or self.fault.joins:
            target = self.fault.repair_delay + getattr(self.fault, "bytes", 0) / REPAIR_RATE + 30
            r["repair_target_s"] = round(target, 1)
            for s in self.sampler.samples:
                if s[0] < ev["fault"]:
                    continue
                ok = s[2] == 0 and (not self.fault.joins or
                                    (all(j in s[6] for j in self.fault.joins) and balanced(s[6])))
                if ok:
                    r["repair_s"] = round(s[0] - ev["fault"], 1)
                    break
            r["per_store_end"] = copies[6]
            r["store_bytes_end"] = {n.name: store_bytes(n) for n in self.cluster.stores() if n.name not in self.fault.gone}
        r["membership"] = {k: (sorted(v) if v is not None else None) for k, v in views.items()}
        r["plain_sent"] = self.plain.sent
        r["plain_found"] = len(set(plain_keys))
        r["plain_dups"] = len(plain_keys) - len(set(plain_keys))
        r["notes"] = list(NOTES)
        del NOTES[:]
        r["failures"] = [name for name, bad in (("lost", r["lost"]), ("duplicates", r["dups"]),
                                                 ("200-with-missing", r["bad_200"])) if bad]
        if self.fault.heal_targets and not self.quick:
            fa = r["full_answers_after_heal"]
            if r["backlog_after_heal"] > 5 or fa is None or fa > 10:
                r["failures"].append("slow-heal")
        if self.fault.exact_copies and copies[5] and r["repair_target_s"] is None:
            r["failures"].append("copies-beyond-N")
        if r["repair_target_s"] is not None:
            if r["repair_s"] is None or r["repair_s"] > r["repair_target_s"]:
                r["failures"].append("repair-slow" if self.fault.gone else "no-share")
            if self.fault.joins and not balanced(copies[6]):
                r["failures"].append("unbalanced")
            if copies[5]:
                r["failures"].append("copies-beyond-N")
        r["timeline"] = {
            "chunks": [(c.writer, c.count, c.t0, c.t1, c.rc) for w in self.writers for c in w.chunks],
            "probes": r.pop("timeline_probes"),
            "copies": self.sampler.samples,
        }
        return r

    def teardown(self):
        self.stop_writers.set()
        self.stop_probes.set()
        for p in list(ALL_PROCS):
            if p.poll() is None:
                try:
                    p.kill()
                except OSError:
                    pass
        self.cluster.stop()
        for p in list(ALL_PROCS):
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        ALL_PROCS.clear()
        for m in self.mounts:
            netlab.sh("umount", "-l", m, check=False)
        shutil.rmtree(self.data, ignore_errors=True)


def full_answers_after(probes, heal, gone=()):
    """Seconds from the heal until the end of the first probe that started after it and every
    probe after that one (on a node still in the cluster) was a complete 200; None: never."""
    later = [p for p in probes if p[0] >= heal and p[2] not in gone]
    for i, p in enumerate(later):
        if all(q[3] == 200 and q[4] is None and q[6] == 0 for q in later[i:]):
            return round((p[1] if p[1] is not None else p[0]) - heal, 1)
    return None


def balanced(per_store, within=0.2):
    """Whether every answering store holds within `within` of the mean of acknowledged records."""
    if not per_store:
        return False
    mean = sum(per_store.values()) / len(per_store)
    return all(abs(n - mean) <= within * mean for n in per_store.values())


def rate(acked, t0, t1):
    """Acknowledged records per second whose chunk ended in [t0, t1)."""
    if t1 <= t0:
        return 0.0
    return round(sum(c.count for c in acked if t0 <= c.t1 < t1) / (t1 - t0), 1)


# ---------------------------------------------------------------------------------------------
# Output.

COLUMNS = [("scenario", "scenario"), ("acked", "acked"), ("lost", "lost"), ("dups", "dups"),
           ("bad_200", "200-missing"), ("probe_206", "206"), ("probe_err", "errors"),
           ("under_end", "under-repl end"), ("over_end", "over-repl end"), ("full_copies_after_heal", "full copies s"),
           ("repair", "repair/share s (target)"),
           ("tput_ratio", "tput fault/ok"), ("backlog_after_heal", "backlog s"),
           ("full_answers_after_heal", "full answers s"),
           ("membership_ok", "members ok"), ("plain", "plain sent/found/dups"), ("verdict", "verdict")]


def table(results):
    rows = [[h for _, h in COLUMNS]]
    for r in results:
        r["plain"] = "%d/%d/%d" % (r["plain_sent"], r["plain_found"], r["plain_dups"])
        r["repair"] = None if r.get("repair_target_s") is None else "%s (%s)" % (
            "never" if r["repair_s"] is None else r["repair_s"], r["repair_target_s"])
        r["verdict"] = "PASS" if not r["failures"] else "FAIL: " + ",".join(r["failures"])
        rows.append(["-" if r.get(k) is None else str(r.get(k)) for k, _ in COLUMNS])
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = []
    for j, row in enumerate(rows):
        lines.append("| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(row)) + " |")
        if j == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def write_outputs(r, out_dir):
    path = os.path.join(out_dir, r["scenario"])
    with open(os.path.join(path, "result.json"), "w") as f:
        json.dump(r, f, indent=1, default=str)
    try:
        import plot
        png = os.path.join(out_dir, r["scenario"] + ".png")
        plot.timeline(r, png)
        return png
    except ImportError as e:
        print("chaos: no PNG for %s (%s; install python3-matplotlib)" % (r["scenario"], e), flush=True)
        return None


# ---------------------------------------------------------------------------------------------
# Main: lock, clean leftovers, build the lab, run each scenario, always clean up.


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--oklog", default=os.environ.get("OKLOG_BINARY", os.path.join(REPO, "build", "oklog")),
                    help="the oklog binary (env OKLOG_BINARY; default build/oklog in the repo)")
    ap.add_argument("--scenarios", default="short",
                    help="short, full, or names joined by commas: " + ",".join(SCENARIOS))
    ap.add_argument("--out", default=None, help="directory for tables, JSON and PNGs (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the nodes' data directories")
    ap.add_argument("--flags", default="",
                    help="extra flags for every node, e.g. \"-store.placement-bucket 500ms -store.rebalance-settle 5s\"")
    ap.add_argument("--exact-copies", action="store_true",
                    help="every scenario must also end with no record on more than 2 stores (give the nodes short "
                         "placement buckets and settle with --flags, and time with --settle)")
    ap.add_argument("--settle", type=float, default=None, help="seconds the checker waits at most for convergence")
    ap.add_argument("--keyless", action="store_true",
                    help="run the cluster without -cluster.key-file (by default every node shares a fresh key)")
    ap.add_argument("--fault", type=float, default=None,
                    help="seconds of the fault window (default: 10 for short and named scenarios, 30 for full)")
    args = ap.parse_args()

    names = SETS.get(args.scenarios, None) or [s for s in args.scenarios.split(",") if s]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        ap.error("unknown scenario %s (known: %s)" % (",".join(unknown), ",".join(SCENARIOS)))
    timing = FULL if args.scenarios == "full" else SHORT
    if args.fault is not None or args.settle is not None:
        timing = Timing(timing.warm, timing.fault if args.fault is None else args.fault, timing.post,
                        timing.settle if args.settle is None else args.settle)
    why = netlab.available()
    if why:
        print("chaos: SKIP: %s" % why, flush=True)
        return 77
    oklog = os.path.abspath(args.oklog)
    if not os.access(oklog, os.X_OK):
        print("chaos: %s is not an executable oklog binary (--oklog / OKLOG_BINARY)" % oklog)
        return 2
    if shutil.which("nft") is None:
        print("chaos: nft (package nftables) is missing: scripts/setup.sh installs it")
        return 2
    out = os.path.abspath(args.out or tempfile.mkdtemp(prefix="oklog-chaos-out-"))
    os.makedirs(out, exist_ok=True)

    lock = open(LOCK, "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("chaos: waiting for another chaos run (%s) to end" % LOCK, flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)

    left = netlab.cleanup()
    if left:
        print("chaos: removed leftovers of an earlier run: %s" % " ".join(left), flush=True)
    atexit.register(netlab.cleanup)

    def on_signal(sig, _frame):
        raise KeyboardInterrupt("signal %d" % sig)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    # One fixed place for the nodes' data, so a crashed run's is removed by the next.
    data_root = os.path.join(tempfile.gettempdir(), "oklog-chaos-data")
    with open("/proc/mounts") as f:
        for line in f:
            if line.split()[1].startswith(data_root + "/"):
                netlab.sh("umount", "-l", line.split()[1], check=False)
    shutil.rmtree(data_root, ignore_errors=True)
    os.makedirs(data_root)
    # A keyed cluster, as operators should run one: every node shares one fresh key.
    key_flags = ()
    if not args.keyless:
        key_file = os.path.join(data_root, "cluster.keys")
        key = subprocess.run([oklog, "keygen"], check=True, capture_output=True).stdout
        with open(key_file, "wb") as f:
            f.write(key)
        os.chmod(key_file, 0o600)
        key_flags = ("-cluster.key-file", key_file)
    results, t_all = [], time.time()
    print("chaos: %s with %s; output in %s; load: %s" % (",".join(names), oklog, out,
                                                            open("/proc/loadavg").read().strip()), flush=True)
    rc = 0
    try:
        lab = netlab.Lab()
        for name, ip in INGESTS + STORES + SPARES + [CLIENT]:
            lab.add(name, ip)
        lab.enter_client(CLIENT[0])
        for name in names:
            fault = SCENARIOS[name]
            fault.flags = tuple(fault.flags) + key_flags + tuple(args.flags.split())
            fault.exact_copies = fault.exact_copies or args.exact_copies
            run = Run(lab, oklog, fault, timing, out, data_root, quick=args.scenarios != "full")
            try:
                r = run.execute()
            finally:
                run.teardown()
            png = write_outputs(r, out)
            results.append(r)
            print(table([r]), flush=True)
            if r["failures"]:
                print("  FAIL details: final answers %s; 200-with-missing probes (t, node, missing, acked) %s"
                      % (json.dumps(r["final"]), r["bad_200_detail"]), flush=True)
            for note in r["notes"]:
                print("  note: %s" % note, flush=True)
            if not r["membership_ok"]:
                print("  membership views differ: %s" % json.dumps(r["membership"]), flush=True)
            if png:
                print("  timeline: %s" % png, flush=True)
    except KeyboardInterrupt as e:
        print("chaos: interrupted (%s); cleaning up" % e, flush=True)
        rc = 130
    except Exception as e:  # a harness error: report it, clean up, exit 2
        import traceback
        traceback.print_exc()
        print("chaos: harness error: %s" % e, flush=True)
        rc = 2
    finally:
        for p in list(ALL_PROCS):
            try:
                p.kill()
            except OSError:
                pass
        netlab.cleanup()
        if not args.keep:
            shutil.rmtree(data_root, ignore_errors=True)
    if results:
        summary = table(results)
        with open(os.path.join(out, "summary.md"), "w") as f:
            f.write("%s\n\ncommand: %s\nload after: %s\nwall time: %.0f s\n" % (
                summary, " ".join(sys.argv), open("/proc/loadavg").read().strip(), time.time() - t_all))
        print("\n" + summary)
        print("chaos: %d scenario(s) in %.0f s; results in %s" % (len(results), time.time() - t_all, out))
    if rc == 0 and any(r["failures"] for r in results):
        rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
