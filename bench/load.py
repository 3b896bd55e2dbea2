#!/usr/bin/env python3
"""Load and leaks (issue 16), run by hand as root, not in CI:

  bench/load.py --berthd target/release/berthd [--clients 200] [--seconds 60]
                [--containers 50] [--cycles 1000] [--warmup 5] [--linger 0]

Starts its own berthd (temporary data and exec roots, --bridge=none --iptables=false, a cgroup
parent of its own), imports a busybox-static image, then:

1. load: N API clients (one keep-alive connection each, reconnecting when needed) for S seconds,
   a mix of reads (ping, version, info, lists, inspect, top, logs) and lifecycle operations
   (stop, start, restart, kill, exec) on C containers. Counts 5xx and dropped connections, prints
   p50/p99 latency, and berthd's RSS and open fds before and after (all containers running
   again in both measures; "before" after a short warm-up, which pages in each operation's code,
   and the cold figures before it).
2. cycles: K create -> start -> exec -> rm cycles; fds, threads, RSS, overlay mounts, cgroups and
   processes (supervisors, their children) before and after.

Prints a Markdown summary (docs/hardening.md, "Load and leaks").
"""

import argparse
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import io
import tempfile
import threading
import time


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import UnixHTTP as UnixHTTPConnection  # noqa: E402  (HTTP over a Unix socket)


def request(conn, method, path, body=None, ctype="application/json"):
    headers = {}
    if body is not None:
        if not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
        headers["Content-Type"] = ctype
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    return r.status, data


def busybox_tar():
    buf = io.BytesIO()
    t = tarfile.open(fileobj=buf, mode="w")
    for d, m in [("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("proc", 0o755), ("sys", 0o755), ("dev", 0o755)]:
        ti = tarfile.TarInfo(d)
        ti.type = tarfile.DIRTYPE
        ti.mode = m
        t.addfile(ti)
    data = open("/bin/busybox", "rb").read()
    ti = tarfile.TarInfo("bin/busybox")
    ti.size = len(data)
    ti.mode = 0o755
    t.addfile(ti, io.BytesIO(data))
    for a in subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout.split():
        if a == "busybox":
            continue
        ti = tarfile.TarInfo("bin/" + a)
        ti.type = tarfile.SYMTYPE
        ti.linkname = "busybox"
        t.addfile(ti)
    for p, text in [("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"), ("etc/group", "root:x:0:\n")]:
        b = text.encode()
        ti = tarfile.TarInfo(p)
        ti.size = len(b)
        ti.mode = 0o644
        t.addfile(ti, io.BytesIO(b))
    t.close()
    return buf.getvalue()


class Daemon:
    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="berth-load-")
        self.sock = os.path.join(self.dir, "berth.sock")
        self.data = os.path.join(self.dir, "data")
        self.exec_root = os.path.join(self.dir, "exec")
        self.parent = "berth-load-%d" % os.getpid()
        with open(os.path.join(self.dir, "daemon.json"), "w") as f:
            f.write("{}")
        self.log = open(os.path.join(self.dir, "berthd.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "-H", "unix://" + self.sock, "--bridge=none", "--iptables=false",
             "--data-root", self.data, "--exec-root", self.exec_root,
             "--pidfile", os.path.join(self.dir, "berthd.pid"),
             "--config-file", os.path.join(self.dir, "daemon.json"),
             "--cgroup-parent", self.parent],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        for _ in range(400):
            try:
                c = UnixHTTPConnection(self.sock, 5)
                if request(c, "GET", "/_ping")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit("berthd did not start; see " + self.log.name)

    def conn(self):
        return UnixHTTPConnection(self.sock)

    def figures(self):
        pid = self.proc.pid
        st = open("/proc/%d/status" % pid).read()
        field = lambda name: int([l for l in st.splitlines() if l.startswith(name + ":")][0].split()[1])
        rss = field("VmRSS")
        # The heap (anonymous) apart from the binary's pages (file): code paths first run under
        # load page in more of the 25 MB binary, which is not memory berthd holds on to.
        rss_anon, rss_file = field("RssAnon"), field("RssFile")
        threads = int([l for l in st.splitlines() if l.startswith("Threads:")][0].split()[1])
        fds = len(os.listdir("/proc/%d/fd" % pid))
        mounts = sum(1 for l in open("/proc/self/mountinfo") if self.data in l)
        cg = 0
        for ctl in ("memory", "pids", "unified"):
            d = os.path.join("/sys/fs/cgroup", ctl, self.parent)
            if os.path.isdir(d):
                cg += sum(1 for e in os.scandir(d) if e.is_dir())
        sups = 0
        procs = 0
        sup_pids = []
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                cmd = open("/proc/%s/cmdline" % p, "rb").read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if self.exec_root in cmd and ("__supervise" in cmd or "__proxy" in cmd or "__archive" in cmd):
                sups += 1
                sup_pids.append(p)
        # Every process below the supervisors (containers' processes).
        for p in sup_pids:
            try:
                procs += len(open("/proc/%s/task/%s/children" % (p, p)).read().split())
            except OSError:
                pass
        return {"rss_kib": rss, "rss_anon_kib": rss_anon, "rss_file_kib": rss_file, "threads": threads, "fds": fds, "mounts": mounts,
                "cgroups": cg, "supervisors": sups, "container_procs": procs}

    def stop(self):
        c = self.conn()
        st, body = request(c, "GET", "/containers/json?all=1")
        for ct in json.loads(body):
            request(self.conn(), "DELETE", "/containers/%s?force=1" % ct["Id"])
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()
        for ctl in ("memory", "pids", "unified", "cpu", "cpuacct", "blkio", "devices", "freezer", "cpuset", "systemd"):
            try:
                os.rmdir(os.path.join("/sys/fs/cgroup", ctl, self.parent))
            except OSError:
                pass
        # berthd's bind mounts of <data-root>/containers and <exec-root>/netns outlive it.
        subprocess.run(["sh", "-c", f"grep -o '{self.dir}[^ ]*' /proc/self/mounts | sort -r | xargs -r umount -l"],
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)


def pct(vals, p):
    if not vals:
        return 0.0
    vals = sorted(vals)
    return vals[min(len(vals) - 1, int(round(p / 100.0 * (len(vals) - 1))))]


def load_phase(d, ids, clients, seconds):
    stats = {"requests": 0, "5xx": 0, "dropped": 0, "codes": {}, "lat": [], "errors": []}
    lock = threading.Lock()
    deadline = time.time() + seconds
    reads = ["/_ping", "/version", "/info", "/containers/json", "/containers/json?all=1",
             "/images/json", "/volumes", "/networks"]

    def worker(k):
        rnd = random.Random(k)
        conn = d.conn()
        lat, codes, n5, dropped, errs = [], {}, 0, 0, []
        while time.time() < deadline:
            cid = rnd.choice(ids)
            x = rnd.random()
            if x < 0.55:
                op = ("GET", rnd.choice(reads), None)
            elif x < 0.75:
                op = ("GET", rnd.choice(["/containers/%s/json", "/containers/%s/top",
                                         "/containers/%s/logs?stdout=1&tail=5"]) % cid, None)
            elif x < 0.85:
                op = ("POST", "/containers/%s/exec" % cid, {"Cmd": ["true"]})
            else:
                op = ("POST", rnd.choice(["/containers/%s/stop?t=1", "/containers/%s/start",
                                          "/containers/%s/restart?t=1", "/containers/%s/kill"]) % cid, None)
            t0 = time.time()
            try:
                st, body = request(conn, op[0], op[1], op[2])
                if op[1].endswith("/exec") and st == 201:
                    eid = json.loads(body)["Id"]
                    st, body = request(conn, "POST", "/exec/%s/start" % eid, {"Detach": True})
            except (OSError, http.client.HTTPException) as e:
                dropped += 1
                if len(errs) < 5:
                    errs.append("%s %s: %r" % (op[0], op[1], e))
                conn.close()
                conn = d.conn()
                continue
            lat.append(time.time() - t0)
            codes[st] = codes.get(st, 0) + 1
            if st >= 500:
                n5 += 1
                if len(errs) < 5:
                    errs.append("%s %s: %d %s" % (op[0], op[1], st, body[:200]))
        with lock:
            stats["requests"] += len(lat)
            stats["5xx"] += n5
            stats["dropped"] += dropped
            stats["lat"].extend(lat)
            stats["errors"].extend(errs)
            for c, n in codes.items():
                stats["codes"][c] = stats["codes"].get(c, 0) + n

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return stats


def start_all(d, ids):
    for cid in ids:
        for _ in range(50):
            st, body = request(d.conn(), "GET", "/containers/%s/json" % cid)
            state = json.loads(body)["State"]
            if state["Running"] and not state.get("Restarting"):
                break
            request(d.conn(), "POST", "/containers/%s/start" % cid)
            time.sleep(0.1)


def settle(d, seconds=16):
    """The figures once berthd has been idle for `seconds`: long enough for tokio's idle
    blocking threads to exit (10 s) and for berthd's idle heap trim (5-10 s)."""
    time.sleep(seconds)
    return d.figures()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--berthd", required=True)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--containers", type=int, default=50)
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=5, help="seconds of an 8-client load before the baseline (0: none)")
    ap.add_argument("--linger", type=int, default=0,
                    help="seconds to stay idle after the load, printing the RSS every 30 s (ended execs are "
                         "kept five minutes, as dockerd keeps them)")
    args = ap.parse_args()
    d = Daemon(os.path.abspath(args.berthd))
    try:
        st, body = request(d.conn(), "POST", "/images/create?fromSrc=-&repo=busybox&tag=latest",
                           busybox_tar(), "application/x-tar")
        assert st == 200, body
        ids = []
        for i in range(args.containers):
            st, body = request(d.conn(), "POST", "/containers/create?name=load%d" % i,
                               {"Image": "busybox", "Cmd": ["sh", "-c", "while true; do echo t; sleep 1; done"]})
            assert st == 201, body
            cid = json.loads(body)["Id"]
            st, body = request(d.conn(), "POST", "/containers/%s/start" % cid)
            assert st == 204, body
            ids.append(cid)
        cold = settle(d)
        # A short warm-up first, so that "before" is taken with every operation's code paged in
        # and its first-use state made (the cold figures are printed too): what the load adds
        # after it is what a leak check is after.
        if args.warmup:
            load_phase(d, ids, 8, args.warmup)
            start_all(d, ids)
        before = settle(d)
        t0 = time.time()
        s = load_phase(d, ids, args.clients, args.seconds)
        elapsed = time.time() - t0
        start_all(d, ids)
        after = settle(d)
        print("## load: %d clients, %d s, %d containers" % (args.clients, args.seconds, args.containers))
        print("requests %d (%.0f/s), 5xx %d, dropped connections %d" % (s["requests"], s["requests"] / elapsed, s["5xx"], s["dropped"]))
        print("status codes: %s" % dict(sorted(s["codes"].items())))
        print("latency p50 %.1f ms, p99 %.1f ms, max %.1f ms" % (pct(s["lat"], 50) * 1e3, pct(s["lat"], 99) * 1e3, max(s["lat"] or [0]) * 1e3))
        print("cold:   %s" % cold)
        print("before: %s (after a %d s warm-up with 8 clients)" % (before, args.warmup))
        print("after:  %s" % after)
        for e in s["errors"][:10]:
            print("  error: %s" % e)
        sys.stdout.flush()
        quiet = time.time()
        while time.time() - quiet < args.linger:
            time.sleep(min(30, args.linger - (time.time() - quiet)))
            f = d.figures()
            print("idle %3.0f s more: rss %d KiB, anonymous %d KiB" % (time.time() - quiet, f["rss_kib"], f["rss_anon_kib"]))
            sys.stdout.flush()
        for cid in ids:
            request(d.conn(), "DELETE", "/containers/%s?force=1" % cid)
        base = settle(d)
        t0 = time.time()
        fails = 0
        for i in range(args.cycles):
            c = d.conn()
            st, body = request(c, "POST", "/containers/create", {"Image": "busybox", "Cmd": ["sleep", "100"]})
            if st != 201:
                fails += 1
                continue
            cid = json.loads(body)["Id"]
            st, _ = request(c, "POST", "/containers/%s/start" % cid)
            fails += st != 204
            st, body = request(c, "POST", "/containers/%s/exec" % cid, {"Cmd": ["true"], "AttachStdout": True})
            if st == 201:
                eid = json.loads(body)["Id"]
                c2 = d.conn()
                st, _ = request(c2, "POST", "/exec/%s/start" % eid, {"Detach": False, "Tty": False})
                c2.close()
                fails += st != 200
            else:
                fails += 1
            st, _ = request(c, "DELETE", "/containers/%s?force=1" % cid)
            fails += st != 204
            c.close()
            if (i + 1) % 100 == 0:
                print("  cycle %d, %.1f s" % (i + 1, time.time() - t0), file=sys.stderr)
        end = settle(d)
        print("## cycles: %d create/start/exec/rm in %.0f s, %d failed steps" % (args.cycles, time.time() - t0, fails))
        print("baseline: %s" % base)
        print("after:    %s" % end)
    finally:
        d.stop()


if __name__ == "__main__":
    main()
