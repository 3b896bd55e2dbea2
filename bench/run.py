#!/usr/bin/env python3
"""berth against dockerd and podman, side by side, in one run (issue #6).

Every system runs on private sockets, data roots and ports; runs alternate between the
systems so that ratios hold on a noisy machine. Prints min / median / max per system and the
ratios berth/dockerd and berth/podman, and rewrites the table in docs/benchmarks.md.

Usage (root): bench/run.sh [--quick] [--install-anchors] [--runs N] [--no-docs] [--only a,b]
                           [--scale-sizes 10,100,500] [--berthd PATH] [--floor PATH]
  --quick            every scenario once, berth alone, small sizes (CI runs this)
  --install-anchors  apt-get install docker.io, podman and wrk first
Scenarios: start, run (the headline `docker run --rm busybox true` with the defaults, on the
default bridge and with `--network none`, the raw API lifecycle, and the CLI and container
floors), wrk, many, logs, images, storage, network (each daemon in its own network namespace,
with networking on), stats (one streaming `GET /containers/{id}/stats` per running container;
the daemon's CPU time while they stream), build, scale (10, 100 and 500 running containers:
memory, latencies, restart; plots into docs/bench/).

berthd and dockerd get the options a user types. Only podman's containers get `PODMAN_OPTS`:
`--network none` (its networking would act on the host's namespace) and file and process
limits its runc may set without CAP_SYS_RESOURCE (podman 4.3's defaults are refused).
"""
import argparse, http.client, json, os, re, shutil, signal, socket, statistics, subprocess
import sys, tempfile, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
# podman only: no network (its bridges would be the host's), and file and process limits its
# runc may set (without CAP_SYS_RESOURCE, podman 4.3's defaults above the hard limits are
# refused). berthd and dockerd get the defaults a user types: nothing.
import resource
_NPROC = resource.getrlimit(resource.RLIMIT_NPROC)[1]
_NPROC = 65536 if _NPROC in (resource.RLIM_INFINITY, -1) else _NPROC
PODMAN_OPTS = ["--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", f"nproc={_NPROC}:{_NPROC}"]
PODMAN_HOST_CONFIG = {"NetworkMode": "none", "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 1024},
                                                         {"Name": "nproc", "Soft": _NPROC, "Hard": _NPROC}]}


# The start scenario's second row: the same daemon started again on the data root its first
# start left.
START_AGAIN = "start → /_ping again, on the data root the first start left"


def run_opts(s):
    """The `docker run` options of system `s`: none but podman's."""
    return PODMAN_OPTS if s.name == "podman" else []
TOP = os.path.dirname(HERE)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ----- HTTP over a Unix socket -----

class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


def api(sock, method, path, body=None, ok=(200, 201, 204, 304)):
    c = UnixHTTP(sock)
    headers = {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    c.request(method, path, body=data, headers=headers)
    r = c.getresponse()
    out = r.read()
    c.close()
    if r.status not in ok:
        raise RuntimeError(f"{method} {path}: {r.status} {out[:300]!r}")
    return json.loads(out) if out.strip().startswith(b"{") or out.strip().startswith(b"[") else out


def ping(sock):
    try:
        c = UnixHTTP(sock, timeout=1)
        c.request("GET", "/_ping")
        r = c.getresponse()
        r.read()
        c.close()
        return r.status == 200
    except OSError:
        return False


# ----- processes and memory -----

def rss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ticks(pids):
    """utime + stime of processes, in clock ticks (gone ones count 0)."""
    total = 0
    for p in pids:
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                out += [int(x) for x in open(f"/proc/{pid}/task/{tid}/children").read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return out


def tree(pid):
    seen, stack = [], [pid]
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.append(p)
        stack += children(p)
    return seen


def ppid(pid):
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# ----- the systems -----

class InstantDaemon:
    """What the docker CLI costs by itself: a fake daemon on a Unix socket that answers at once
    every request of `docker version` and `docker run --rm … true` (ping, create, attach, wait,
    start; the attach ends and the wait answers `StatusCode 0` when the start comes)."""

    HEAD = ("api-version: 1.50\r\nostype: linux\r\nserver: Docker/28.2.2 (linux)\r\n"
            "docker-experimental: false\r\n")

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.attach, self.wait = None, None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(64)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.conn, args=(conn,), daemon=True).start()

    def reply(self, conn, status, ctype="", body=b""):
        head = f"HTTP/1.1 {status}\r\n{self.HEAD}"
        if ctype:
            head += f"content-type: {ctype}\r\n"
        if not status.startswith("204"):
            head += f"content-length: {len(body)}\r\n"
        conn.sendall(head.encode() + b"\r\n" + body)

    def conn(self, conn):
        f = conn.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                method, path = line.decode().split()[:2]
                length = 0
                while True:
                    h = f.readline()
                    if h in (b"\r\n", b""):
                        break
                    k, _, v = h.decode().partition(":")
                    if k.strip().lower() == "content-length":
                        length = int(v)
                if length:
                    f.read(length)
                path = path.split("?")[0]
                if path.endswith("/_ping"):
                    self.reply(conn, "200 OK", "text/plain", b"" if method == "HEAD" else b"OK")
                elif path.endswith("/version"):
                    body = json.dumps({"Version": "28.2.2", "ApiVersion": "1.50", "MinAPIVersion": "1.24",
                                       "Os": "linux", "Arch": "amd64"}).encode()
                    self.reply(conn, "200 OK", "application/json", body)
                elif path.endswith("/containers/create"):
                    self.reply(conn, "201 Created", "application/json",
                               json.dumps({"Id": "a" * 64, "Warnings": []}).encode())
                elif path.endswith("/attach"):
                    conn.sendall(f"HTTP/1.1 101 UPGRADED\r\n{self.HEAD}content-type: application/vnd.docker.raw-stream"
                                 "\r\nconnection: Upgrade\r\nupgrade: tcp\r\n\r\n".encode())
                    with self.lock:
                        self.attach = conn
                    return
                elif path.endswith("/wait"):
                    conn.sendall(f"HTTP/1.1 200 OK\r\n{self.HEAD}content-type: application/json\r\n"
                                 "transfer-encoding: chunked\r\n\r\n".encode())
                    with self.lock:
                        self.wait = conn
                elif path.endswith("/start"):
                    self.reply(conn, "204 No Content")
                    with self.lock:
                        attach, wait, self.attach, self.wait = self.attach, self.wait, None, None
                    if attach:
                        attach.shutdown(socket.SHUT_RDWR)
                        attach.close()
                    if wait:
                        body = b'{"StatusCode":0}\n'
                        wait.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
                else:
                    self.reply(conn, "404 Not Found", "application/json", b'{"message":"not here"}')
        except (OSError, ValueError):
            return
        finally:
            if conn is not self.attach:
                f.close()

    def close(self):
        self.sock.close()
        os.unlink(self.path)


class System:
    """One daemon under test, on private paths."""

    def __init__(self, name, work, berthd=None):
        self.name = name
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir, exist_ok=True)
        self.sock = os.path.join(self.dir, "api.sock")
        self.port = free_port()
        self.proc = None
        self.berthd = berthd
        self.tcp = False
        # Networking on (the default bridge), in a network namespace of its own: the run, many,
        # network and scale scenarios. Otherwise both daemons run without a bridge and without
        # firewall rules. The namespace is kept by a bind mount (`unshare --net=<file>`) so that
        # a restarted daemon finds its bridge and its containers' veths again.
        self.netns = False
        self.nsfile = None
        # `--live-restore` (the scale scenario's restart): dockerd's containers survive it.
        self.live_restore = False
        self.spawned = 0.0
        self.old_pgids = []  # process groups of restarted daemons (dockerd's containerd may live on)

    def command(self, tcp):
        d = self.dir
        if self.name == "berth":
            cmd = [self.berthd, "-H", f"unix://{self.sock}", "--data-root", f"{d}/root",
                   "--exec-root", f"{d}/exec", "--pidfile", f"{d}/pid",
                   "--config-file", f"{d}/daemon.json", "--cgroup-parent", "berth-bench"]
            if not self.netns:
                cmd += ["--bridge=none", "--iptables=false"]
            if self.live_restore:
                cmd += ["--live-restore"]
            if tcp:
                cmd += ["-H", f"tcp://127.0.0.1:{self.port}"]
            return self.wrap(cmd)
        if self.name == "dockerd":
            cmd = ["/usr/sbin/dockerd", "-H", f"unix://{self.sock}", "--data-root", f"{d}/root",
                   "--exec-root", f"{d}/exec", "--pidfile", f"{d}/pid",
                   "--config-file", f"{d}/daemon.json", "--cgroup-parent", "dockerd-bench"]
            if not self.netns:
                cmd += ["--bridge=none", "--iptables=false", "--ip-masq=false"]
            if self.live_restore:
                cmd += ["--live-restore"]
            if tcp:
                cmd += ["-H", f"tcp://127.0.0.1:{self.port}"]
            return self.wrap(cmd)
        # podman serves one URI: the Unix socket; wrk goes through a TCP instance of its own.
        uri = f"tcp:127.0.0.1:{self.port}" if tcp else f"unix://{self.sock}"
        return ["podman", "--root", f"{d}/root", "--runroot", f"{d}/run", "--cgroup-manager",
                "cgroupfs", "--events-backend", "file", "system", "service", "--time=0", uri]

    def wrap(self, cmd):
        if not self.netns:
            return cmd
        if not self.nsfile:
            self.nsfile = os.path.join(self.dir, "netns")
            open(self.nsfile, "w").close()
            subprocess.run(["unshare", f"--net={self.nsfile}", "ip", "link", "set", "lo", "up"], check=True)
        return ["nsenter", f"--net={self.nsfile}", "--", *cmd]

    def drop_netns(self):
        if self.nsfile:
            subprocess.run(["umount", self.nsfile], stderr=subprocess.DEVNULL)
            try:
                os.unlink(self.nsfile)
            except OSError:
                pass
            self.nsfile = None

    def in_netns(self, *cmd, **kw):
        """A command in the daemon's network namespace (clients of published ports)."""
        return subprocess.run(["nsenter", f"--net=/proc/{self.proc.pid}/ns/net", "--", *cmd], **kw)

    def start(self, tcp=False):
        with open(os.path.join(self.dir, "daemon.json"), "w") as f:
            f.write("{}")
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        logf = open(os.path.join(self.dir, "daemon.log"), "ab")
        cmd = self.command(tcp)
        t0 = time.monotonic()
        self.spawned = t0
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=logf,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.tcp = tcp
        deadline = t0 + 60
        while time.monotonic() < deadline:
            if self.ready():
                return (time.monotonic() - t0) * 1000
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.dir}/daemon.log")
            # Polled every 0.5 ms: a start of 8 ms measured in steps of 2 ms was a millisecond
            # late on average.
            time.sleep(0.0005)
        raise RuntimeError(f"{self.name} did not answer /_ping within 60 s")

    def restart(self):
        """SIGTERM to the daemon alone (containers keep running: berth always, dockerd with
        `--live-restore`), then start it again; returns the ms to its first `/_ping`."""
        self.old_pgids.append(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.start(self.tcp)

    def ready(self):
        if self.name == "podman" and self.tcp:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/_ping")
                ok = c.getresponse().status == 200
                c.close()
                return ok
            except OSError:
                return False
        return ping(self.sock)

    @property
    def host(self):
        if self.name == "podman" and self.tcp:
            return f"tcp://127.0.0.1:{self.port}"
        return f"unix://{self.sock}"

    def docker(self, *args, check=True, extra_env=None, **kw):
        env = dict(os.environ, DOCKER_HOST=self.host, DOCKER_CONFIG=os.path.join(self.dir, "cli"))
        env.update(extra_env or {})
        env.pop("DOCKER_CONTEXT", None)
        if "stdout" in kw:
            kw.setdefault("stderr", subprocess.PIPE)
        else:
            kw["capture_output"] = True
        r = subprocess.run(["docker", *args], env=env, **kw)
        if check and r.returncode != 0:
            err = (r.stderr or b"").decode()[:300]
            raise RuntimeError(f"{self.name}: docker {' '.join(args)}: {err}")
        return r

    def api(self, method, path, body=None):
        if self.name == "podman" and self.tcp:
            raise RuntimeError("api over the Unix socket only")
        return api(self.sock, method, path, body)

    def daemon_pids(self):
        """The daemon-side processes that are not per container: berthd's spare supervisor
        (`__spare`, detached like every supervisor, so not in the daemon's tree) counts too."""
        if not self.proc:
            return []
        pids = tree(self.proc.pid)
        if self.name == "berth":
            mark = f"{self.dir}/exec/".encode()
            for e in os.listdir("/proc"):
                if e.isdigit() and int(e) not in pids:
                    try:
                        cmd = open(f"/proc/{e}/cmdline", "rb").read()
                    except OSError:
                        continue
                    if b"__spare" in cmd and mark in cmd:
                        pids.append(int(e))
        return [p for p in pids if not self.per_container(p)]

    def per_container(self, pid):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            return False
        return b"__supervise" in cmd or b"containerd-shim" in cmd or cmd.startswith(b"/usr/bin/conmon") or b"conmon" in cmd.split(b"\0")[0]

    def stop(self):
        if not self.proc:
            return
        try:
            self.docker("rm", "-f", *self.docker("ps", "-aq").stdout.decode().split(), check=False)
        except Exception:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None
        # What a restarted daemon left in its process group (dockerd's containerd): only
        # processes of that group that run on this system's paths.
        for p in os.listdir("/proc") if self.old_pgids else []:
            if not p.isdigit():
                continue
            try:
                pgid = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[2])
                cmd = open(f"/proc/{p}/cmdline", "rb").read()
            except (OSError, IndexError, ValueError):
                continue
            if pgid in self.old_pgids and self.dir.encode() in cmd:
                try:
                    os.kill(int(p), signal.SIGTERM)
                except ProcessLookupError:
                    pass
        self.old_pgids = []
        self.drop_netns()


# ----- helpers -----

def stats(values):
    v = sorted(values)
    return v[0], statistics.median(v), v[-1]


def busybox_tar(path):
    import io, tarfile
    with tarfile.open(path, "w") as t:
        for name, mode in [("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("root", 0o700),
                           ("proc", 0o755), ("sys", 0o755), ("dev", 0o755)]:
            i = tarfile.TarInfo(name); i.type = tarfile.DIRTYPE; i.mode = mode; t.addfile(i)
        t.add("/bin/busybox", "bin/busybox")
        applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout.split()
        for a in applets:
            if a != "busybox":
                i = tarfile.TarInfo("bin/" + a); i.type = tarfile.SYMTYPE; i.linkname = "busybox"; t.addfile(i)
        for p, text in [("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"), ("etc/group", "root:x:0:\n")]:
            b = text.encode(); i = tarfile.TarInfo(p); i.size = len(b); i.mode = 0o644
            t.addfile(i, io.BytesIO(b))


def order(systems, run):
    return systems if run % 2 == 0 else list(reversed(systems))


# ----- scenarios -----

class Bench:
    def __init__(self, args, work, systems):
        self.args = args
        self.work = work
        self.systems = systems
        self.results = {}  # (scenario, system) -> list of values
        self.units = {}
        self.better = {}  # scenario -> "lower" | "higher"
        self.notes = []
        self.skip = set()
        self.checks = []  # (target, value, "met" | "**missed**")
        self.floor = None  # the container-floor binary (bench/floor.rs)
        self.scale = None  # the scale scenario's medians, for scale.json and the plots

    def add(self, scenario, system, value, unit, better="lower"):
        name = system.name if hasattr(system, "name") else system
        self.results.setdefault((scenario, name), []).append(value)
        if os.environ.get("BENCH_SAMPLES"):
            log(f"sample: {scenario}: {name}: {value:.1f} {unit}")
        self.units[scenario] = unit
        self.better[scenario] = better

    def failed(self, s, scenario, e):
        """One system failing a scenario skips it for the rest of that scenario only."""
        self.notes.append(f"{s.name}: {scenario}: {str(e)[:200]}")
        log(self.notes[-1])
        self.skip.add((scenario, s.name))

    def live(self, scenario, run):
        return [s for s in order(self.systems, run) if (scenario, s.name) not in self.skip]

    def runs(self, n):
        return 1 if self.args.quick else n

    def image(self, s):
        tar = os.path.join(self.work, "busybox.tar")
        if not os.path.exists(tar):
            busybox_tar(tar)
        if s.name == "podman":
            # podman's compat API has no import of a plain rootfs: load a docker-archive.
            arch = os.path.join(self.work, "busybox-archive.tar")
            if not os.path.exists(arch):
                raise RuntimeError("berth must make the archive first")
            s.docker("load", "-i", arch)
        else:
            s.docker("import", tar, "bench-busybox:latest")
            if s.name == "berth":
                arch = os.path.join(self.work, "busybox-archive.tar")
                if not os.path.exists(arch):
                    s.docker("save", "-o", arch, "bench-busybox:latest")

    def start_all(self, scenario, tcp=False):
        for s in self.systems:
            try:
                s.start(tcp)
                self.image(s)
            except Exception as e:
                self.failed(s, scenario, e)

    def stop_all(self):
        for s in self.systems:
            s.stop()

    def scenario_start(self):
        """Start → first `/_ping`: a first start on an empty data root, then a start again on the
        data root it left (a restart or a reboot: what a daemon does every day after its first)."""
        for run in range(self.runs(5)):
            for s in self.live("start", run):
                try:
                    ms = s.start()
                    self.add("start → /_ping", s, ms, "ms")
                    time.sleep(1 if self.args.quick else 3)
                    kib = sum(rss_kib(p) for p in s.daemon_pids())
                    self.add("idle RSS (daemon-side processes)", s, kib / 1024, "MiB")
                    s.stop()
                    ms = s.start()
                    self.add(START_AGAIN, s, ms, "ms")
                    s.stop()
                    shutil.rmtree(os.path.join(s.dir, "root"), ignore_errors=True)
                except Exception as e:
                    self.failed(s, "start", e)
        for sc in ("start → /_ping", START_AGAIN):
            b, d = self.med(sc, "berth"), self.med(sc, "dockerd")
            if b is not None and d:
                self.check(f"{sc} ≤ 1/20 of dockerd", f"{b / d:.3f} ({b:.1f} vs {d:.0f} ms)", b <= d / 20)

    def scenario_run_and_api(self):
        """The headline: `docker run --rm busybox true` with the defaults a user types, on the
        default bridge and with `--network none` (berthd and dockerd each in a network namespace
        of their own with their bridge), the raw API lifecycle with the defaults, and the two
        floors of issue 17: the CLI floor (`docker version` against the daemon) and the
        container floor (libcontainer alone: create → start → wait → delete of the bundle berth
        generated, `bench/floor.rs`)."""
        for s in self.systems:
            s.netns = s.name != "podman"
        try:
            self._run_and_api()
        finally:
            self.stop_all()
            for s in self.systems:
                s.netns = False

    def _run_and_api(self):
        self.start_all("run_and_api")
        n = self.runs(20)
        cli_ok = {}
        variants = [("on the default bridge", []), ("with `--network none`", ["--network", "none"])]
        for s in self.live("run_and_api", 0):  # warm up; does the CLI's run work at all?
            r = s.docker("run", "--rm", *run_opts(s), "bench-busybox", "true", check=False)
            cli_ok[s.name] = r.returncode == 0
            if r.returncode != 0:
                self.notes.append(f"{s.name}: `docker run` fails through its API: {r.stderr.decode().strip()[:160]}")
        if any(s.name == "podman" for s in self.live("run_and_api", 0)):
            self.notes.append("podman: its `docker run` and API rows use `" + " ".join(PODMAN_OPTS) +
                              "` (its runc needs the limits; its networking would act on the host)")
        bundle = None
        berth = [s for s in self.live("run_and_api", 0) if s.name == "berth"]
        if berth:
            try:
                bundle = self.floor_bundle(berth[0])
            except Exception as e:
                self.notes.append(f"container floor not measured: {str(e)[:200]}")
                log(self.notes[-1])
        instant = None
        try:
            instant = InstantDaemon(os.path.join(self.work, "instant.sock"))
        except OSError as e:
            self.notes.append(f"the CLI alone not measured: {e}")
        for run in range(n):
            for s in self.live("run_and_api", run):
                try:
                    if cli_ok[s.name]:
                        for label, extra in variants:
                            if s.name == "podman" and extra == []:
                                continue  # podman's containers only ever get `--network none`
                            t0 = time.monotonic()
                            s.docker("run", "--rm", *(run_opts(s) or extra), "bench-busybox", "true")
                            self.add(f"`docker run --rm busybox true` {label}", s, (time.monotonic() - t0) * 1000, "ms")
                    t0 = time.monotonic()
                    s.docker("version")
                    self.add("CLI floor: `docker version`", s, (time.monotonic() - t0) * 1000, "ms")
                    t = [time.monotonic()]
                    body = {"Image": "bench-busybox", "Cmd": ["true"]}
                    if s.name == "podman":
                        body["HostConfig"] = PODMAN_HOST_CONFIG
                    r = s.api("POST", "/v1.41/containers/create", body)
                    t.append(time.monotonic())
                    cid = r["Id"]
                    s.api("POST", f"/v1.41/containers/{cid}/start")
                    t.append(time.monotonic())
                    s.api("POST", f"/v1.41/containers/{cid}/wait")
                    t.append(time.monotonic())
                    s.api("DELETE", f"/v1.41/containers/{cid}")
                    t.append(time.monotonic())
                    self.add("API create → start → wait → delete", s, (t[4] - t[0]) * 1000, "ms")
                    for name, a, b in [("create", 0, 1), ("start", 1, 2), ("wait", 2, 3), ("delete", 3, 4)]:
                        self.add(f"… {name}", s, (t[b] - t[a]) * 1000, "ms")
                    if s.name == "berth" and bundle:
                        # One container per process, as each supervisor builds one.
                        out = subprocess.run([self.floor, bundle, "1"], capture_output=True, text=True,
                                             timeout=60)
                        if out.returncode != 0:
                            raise RuntimeError(f"container floor: {out.stderr.strip()[-200:]}")
                        v = [float(x) for x in out.stdout.split()]
                        self.add("container floor: libcontainer create → start → wait → delete", s, v[0], "ms")
                        for name, k in [("create", 1), ("start", 2), ("wait", 3), ("delete", 4)]:
                            self.add(f"… floor {name}", s, v[k], "ms")
                    if s.name == "berth" and instant:
                        self.cli_alone(s, instant)
                except Exception as e:
                    self.failed(s, "run_and_api", e)
        if instant:
            instant.close()
        self.run_checks()

    def cli_alone(self, s, instant):
        """The docker CLI's own time for `docker version` and `docker run --rm … true`, against
        a daemon that answers at once ([`InstantDaemon`]): `run` sends five requests where
        `version` sends two, and the CLI works between them."""
        env = dict(os.environ, DOCKER_HOST=f"unix://{instant.path}", DOCKER_CONFIG=os.path.join(s.dir, "cli"))
        env.pop("DOCKER_CONTEXT", None)
        for label, args in [("`docker version`", ["version"]),
                            ("`docker run --rm busybox true`", ["run", "--rm", "bench-busybox", "true"])]:
            t0 = time.monotonic()
            r = subprocess.run(["docker", *args], env=env, capture_output=True)
            if r.returncode != 0:
                raise RuntimeError(f"the CLI alone: docker {' '.join(args)}: {r.stderr.decode()[:200]}")
            self.add(f"the CLI alone: {label} against a daemon that answers at once", s,
                     (time.monotonic() - t0) * 1000, "ms")

    def floor_bundle(self, s):
        """The container floor's bundle: the config.json berth generated for a running busybox
        container (`--network none`), with `true` as its command, its rootfs copied to
        `rootfs/`, the files it bind-mounts from berth's directories (hostname, hosts,
        resolv.conf) copied beside it, no namespace paths (every namespace new) and a cgroup of
        its own."""
        if not self.floor or not os.path.exists(self.floor):
            raise RuntimeError(f"no container-floor binary ({self.floor or 'not built'}): "
                               "cargo build --release --example container-floor (or --floor PATH)")
        cid = s.docker("run", "-d", "--network", "none", "--name", "floor-src", "bench-busybox",
                       "sleep", "100000").stdout.decode().strip()
        try:
            cfg_path = os.path.join(s.dir, "exec", "c", cid, "config.json")
            spec = json.load(open(cfg_path))
            bundle = os.path.join(self.work, "floor-bundle")
            shutil.rmtree(bundle, ignore_errors=True)
            os.makedirs(os.path.join(bundle, "files"))
            subprocess.run(["cp", "-a", spec["root"]["path"] + "/.", os.path.join(bundle, "rootfs")], check=True)
            spec["root"]["path"] = "rootfs"
            spec["process"]["args"] = ["true"]
            spec["process"]["terminal"] = False
            for i, m in enumerate(spec.get("mounts", [])):
                src = m.get("source", "")
                if src.startswith(s.dir + "/") and os.path.isfile(src):
                    dst = os.path.join(bundle, "files", f"{i}-{os.path.basename(src)}")
                    shutil.copy2(src, dst)
                    m["source"] = dst
            lin = spec.setdefault("linux", {})
            for ns in lin.get("namespaces", []):
                ns.pop("path", None)
            lin["cgroupsPath"] = "/berth-bench-floor"
            spec.pop("hooks", None)
            with open(os.path.join(bundle, "config.json"), "w") as f:
                json.dump(spec, f)
        finally:
            s.docker("rm", "-f", "floor-src", check=False)
        # A first container off the clock: page cache, the cgroup's parent.
        out = subprocess.run([self.floor, bundle, "1"], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"container floor: {out.stderr.strip()[-300:]}")
        return bundle

    def med(self, scenario, system):
        v = self.results.get((scenario, system))
        return statistics.median(v) if v else None

    def check(self, target, value, ok):
        self.checks.append((target, value, "met" if ok else "**missed**"))

    def run_checks(self):
        cli = self.med("CLI floor: `docker version`", "berth")
        box = self.med("container floor: libcontainer create → start → wait → delete", "berth")
        for label in ("on the default bridge", "with `--network none`"):
            sc = f"`docker run --rm busybox true` {label}"
            b, d = self.med(sc, "berth"), self.med(sc, "dockerd")
            if b is not None and d:
                self.check(f"{sc} ≤ 0.25 of dockerd", f"{b / d:.2f} ({b:.0f} vs {d:.0f} ms)", b <= 0.25 * d)
            if b is not None and cli is not None and box is not None:
                floor = cli + 2 * box
                self.check(f"{sc} ≤ CLI floor + 2 × container floor",
                           f"{b:.0f} ms vs {cli:.0f} + 2 × {box:.0f} = {floor:.0f} ms", b <= floor)
            alone = self.med("the CLI alone: `docker run --rm busybox true` against a daemon that answers at once", "berth")
            if b is not None and alone is not None and box is not None:
                # Not the wording: the daemon's share, with the CLI's own `run` taken out
                # (it sends five requests where `docker version` sends two).
                self.check(f"{sc}, the daemon's share (minus the CLI alone's `run`) ≤ 2 × container floor",
                           f"{b:.0f} − {alone:.0f} = {b - alone:.0f} ms vs 2 × {box:.0f} = {2 * box:.0f} ms",
                           b - alone <= 2 * box)

    def scenario_wrk(self):
        wrk = shutil.which("wrk")
        if not wrk:
            self.notes.append("wrk scenario skipped: wrk is not installed (apt-get install wrk)")
            log(self.notes[-1])
            return
        self.start_all("wrk", tcp=True)
        dur, conns = ("1s", 4) if self.args.quick else ("10s", 16)
        exited = 10 if self.args.quick else 100

        def run_wrk(s, path):
            out = subprocess.run([wrk, "-t2", f"-c{conns}", f"-d{dur}", "--latency",
                                  f"http://127.0.0.1:{s.port}{path}"], capture_output=True, text=True).stdout
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
            p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else float("nan")
            return rps, p99

        for label, path, fill in [("/_ping", "/_ping", 0), ("/containers/json?all=1 (0)", "/containers/json?all=1", 0),
                                  (f"/containers/json?all=1 ({exited} exited)", "/containers/json?all=1", exited)]:
            for s in self.live("wrk", 0):
                try:
                    have = len(s.docker("ps", "-aq").stdout.split())
                    for _ in range(fill - have):
                        cid = s.docker("run", "-d", *run_opts(s), "bench-busybox", "true").stdout.decode().strip()
                        s.docker("wait", cid)
                except Exception as e:
                    self.failed(s, "wrk", e)
            for run in range(self.runs(1)):
                for s in self.live("wrk", run):
                    try:
                        rps, p99 = run_wrk(s, path)
                        self.add(f"{label} req/s", s, rps, "req/s", "higher")
                        self.add(f"{label} p99", s, p99, "ms")
                    except Exception as e:
                        self.failed(s, "wrk", e)
        self.stop_all()

    def scenario_many(self):
        """50 × `docker run -d busybox sleep` with the defaults (berthd and dockerd on their
        default bridge, each in a network namespace of its own), one by one and at once, and
        the memory of 50 running containers."""
        for s in self.systems:
            s.netns = s.name != "podman"
        try:
            self._many()
        finally:
            self.stop_all()
            for s in self.systems:
                s.netns = False

    def _many(self):
        self.start_all("many")
        n = 5 if self.args.quick else 50
        for s in self.live("many", 0):
            try:
                time.sleep(1)
                idle = sum(rss_kib(p) for p in s.daemon_pids())
                t0 = time.monotonic()
                for i in range(n):
                    s.docker("run", "-d", *run_opts(s), "--name", f"seq{i}", "bench-busybox", "sleep", "1000")
                self.add(f"{n} × `docker run -d … sleep` one by one", s, (time.monotonic() - t0) * 1000, "ms")
                time.sleep(1)
                ids = s.docker("ps", "-q", "--no-trunc").stdout.decode().split()
                per = set()
                for cid in ids:
                    pid = int(s.docker("inspect", "--format", "{{.State.Pid}}", cid).stdout.strip() or 0)
                    if pid:
                        per.add(ppid(pid))
                daemon_kib = sum(rss_kib(p) for p in s.daemon_pids())
                per_kib = sum(rss_kib(p) for p in per)
                self.add(f"RSS with {n} running (daemon + per-container processes)", s, (daemon_kib + per_kib) / 1024, "MiB")
                self.add("per-container overhead", s, (daemon_kib + per_kib - idle) / n / 1024, "MiB")
                s.docker("rm", "-f", *ids)
                errors = []

                def one(i):
                    r = s.docker("run", "-d", *run_opts(s), "--name", f"par{i}", "bench-busybox", "sleep", "1000", check=False)
                    if r.returncode != 0:
                        errors.append(r.stderr.decode()[:200])

                t0 = time.monotonic()
                threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                self.add(f"{n} × `docker run -d … sleep` at once", s, (time.monotonic() - t0) * 1000, "ms")
                if errors:
                    self.notes.append(f"{s.name}: {len(errors)} of the parallel runs failed: {errors[0]}")
                s.docker("rm", "-f", *s.docker("ps", "-aq").stdout.decode().split())
            except Exception as e:
                self.failed(s, "many", e)
        self.stop_all()

    def scenario_logs(self):
        self.start_all("logs")
        mb = 10 if self.args.quick else 100
        for run in range(self.runs(3)):
            for s in self.live("logs", run):
                try:
                    name = f"logs{run}"
                    t0 = time.monotonic()
                    # Detached and waited for: no attach stream competes with the log.
                    s.docker("run", "-d", *run_opts(s), "--name", name, "bench-busybox", "sh", "-c",
                             f"yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstu | head -c {mb * 1000000}")
                    s.docker("wait", name)
                    self.add(f"write {mb} MB to stdout (run to exit)", s, (time.monotonic() - t0) * 1000, "ms")
                    t0 = time.monotonic()
                    r = s.docker("logs", name, stdout=subprocess.DEVNULL)
                    self.add(f"`docker logs` of {mb} MB", s, (time.monotonic() - t0) * 1000, "ms")
                    s.docker("rm", "-f", name)
                except Exception as e:
                    self.failed(s, "logs", e)
        self.stop_all()

    def scenario_stats(self):
        """N running containers, one streaming stats connection each (raw HTTP on the Unix
        socket, read and dropped): the daemon's CPU time over a window, as % of one core.
        Only reported, never judged."""
        self.start_all("stats")
        n = 10 if self.args.quick else 50
        window = 3 if self.args.quick else 10
        tick = os.sysconf("SC_CLK_TCK")
        for s in self.live("stats", 0):
            conns = []
            try:
                for i in range(n):
                    s.docker("run", "-d", *run_opts(s), "--name", f"st{i}", "bench-busybox", "sleep", "1000")
                ids = s.docker("ps", "-q", "--no-trunc").stdout.decode().split()
                per = set()
                for cid in ids:
                    pid = int(s.docker("inspect", "--format", "{{.State.Pid}}", cid).stdout.strip() or 0)
                    if pid:
                        per.add(ppid(pid))
                got = [0] * len(ids)
                stop = threading.Event()

                def reader(k, sock):
                    while not stop.is_set():
                        try:
                            data = sock.recv(65536)
                        except OSError:
                            return
                        if not data:
                            return
                        got[k] += len(data)

                threads = []
                for k, cid in enumerate(ids):
                    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    c.settimeout(2)
                    c.connect(s.sock)
                    c.sendall(f"GET /containers/{cid}/stats HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
                    conns.append(c)
                    t = threading.Thread(target=reader, args=(k, c), daemon=True)
                    t.start()
                    threads.append(t)
                time.sleep(3)  # every stream past its first sample
                before = [0] * len(ids)
                before[:] = got
                daemon = s.daemon_pids()
                c0 = cpu_ticks(daemon)
                p0 = cpu_ticks(per)
                t0 = time.monotonic()
                time.sleep(window)
                c1 = cpu_ticks(daemon)
                p1 = cpu_ticks(per)
                dt = time.monotonic() - t0
                quiet = sum(1 for k in range(len(ids)) if got[k] == before[k])
                self.add(f"{len(ids)} stats streams: daemon CPU", s, (c1 - c0) / tick / dt * 100, "% of a core")
                self.add(f"{len(ids)} stats streams: daemon + per-container processes CPU", s,
                         (c1 - c0 + p1 - p0) / tick / dt * 100, "% of a core")
                if quiet:
                    self.notes.append(f"{s.name}: {quiet} of {len(ids)} stats streams sent nothing during the window")
                stop.set()
            except Exception as e:
                self.failed(s, "stats", e)
            finally:
                for c in conns:
                    try:
                        c.close()
                    except OSError:
                        pass
            try:
                s.docker("rm", "-f", *s.docker("ps", "-aq").stdout.decode().split(), check=False)
            except Exception:
                pass
        self.stop_all()

    def scenario_storage(self):
        """Volumes, commit and cp: a container with 5 volumes created, a 50 MB change committed,
        100 MB copied in and out of a stopped container."""
        self.start_all("storage")
        mb = 5 if self.args.quick else 50
        for run in range(self.runs(5)):
            for s in self.live("storage", run):
                try:
                    name = f"vols{run}"
                    vols = [a for i in range(5) for a in ("-v", f"bench{run}v{i}:/v{i}")]
                    t0 = time.monotonic()
                    s.docker("create", "--name", name, *vols, "bench-busybox", "true")
                    self.add("`docker create` with 5 volumes", s, (time.monotonic() - t0) * 1000, "ms")
                    s.docker("rm", "-v", name)
                    s.docker("volume", "rm", *[f"bench{run}v{i}" for i in range(5)])
                    name = f"commit{run}"
                    s.docker("run", *run_opts(s), "--name", name, "bench-busybox", "sh", "-c",
                             f"mkdir /big && for i in $(seq {mb}); do head -c 1000000 /dev/urandom > /big/f$i; done")
                    t0 = time.monotonic()
                    s.docker("commit", name, f"bench-commit:{run}")
                    self.add(f"`docker commit` of a {mb} MB change", s, (time.monotonic() - t0) * 1000, "ms")
                    s.docker("rm", name)
                    s.docker("rmi", f"bench-commit:{run}")
                    # docker cp of a directory of 1 MB files, in and out of a stopped container.
                    src = os.path.join(self.work, "cp-src")
                    if not os.path.exists(src):
                        os.makedirs(src)
                        for i in range(mb * 2):
                            with open(os.path.join(src, f"f{i}"), "wb") as f:
                                f.write(os.urandom(1000000))
                    name = f"cp{run}"
                    s.docker("create", *run_opts(s), "--name", name, "bench-busybox", "true")
                    t0 = time.monotonic()
                    s.docker("cp", src, f"{name}:/data")
                    self.add(f"`docker cp` of {mb * 2} MB in", s, (time.monotonic() - t0) * 1000, "ms")
                    out = os.path.join(self.work, f"cp-out-{s.name}-{run}")
                    t0 = time.monotonic()
                    s.docker("cp", f"{name}:/data", out)
                    self.add(f"`docker cp` of {mb * 2} MB out", s, (time.monotonic() - t0) * 1000, "ms")
                    shutil.rmtree(out, ignore_errors=True)
                    s.docker("rm", name)
                except Exception as e:
                    self.failed(s, "storage", e)
        self.stop_all()

    def scenario_build(self):
        """The classic builder (`DOCKER_BUILDKIT=0`): a 10-step Dockerfile (5 RUN, 3 COPY of
        20 MB each, 2 metadata steps) built cold (`--no-cache`), then five times fully cached."""
        self.start_all("build")
        mb = 2 if self.args.quick else 20
        ctx = os.path.join(self.work, "build-ctx")
        if not os.path.exists(ctx):
            os.makedirs(ctx)
            for i in range(3):
                with open(os.path.join(ctx, f"blob{i}"), "wb") as f:
                    f.write(os.urandom(mb * 1000000))
            with open(os.path.join(ctx, "Dockerfile"), "w") as f:
                f.write("FROM bench-busybox\n"
                        "ENV STAGE=bench\n"
                        "RUN mkdir -p /work && echo one > /work/one\n"
                        "COPY blob0 /work/\n"
                        "RUN echo two > /work/two\n"
                        "COPY blob1 /work/\n"
                        "RUN echo three > /work/three\n"
                        "COPY blob2 /work/\n"
                        "RUN echo four > /work/four\n"
                        "RUN echo five > /work/five\n"
                        "LABEL bench=build\n")
            # A context edited a minute ago, as a user's: berth's context cache, like git,
            # does not trust a file modified within the second of the build ("racy"), and the
            # context is written just before the first build.
            old = time.time() - 60
            for name in os.listdir(ctx):
                os.utime(os.path.join(ctx, name), (old, old))
        for run in range(self.runs(3)):
            for s in self.live("build", run):
                try:
                    env = {"DOCKER_BUILDKIT": "0"}
                    t0 = time.monotonic()
                    s.docker("build", "--no-cache", "-q", "-t", f"bench-built:{run}", ctx, extra_env=env)
                    self.add(f"`docker build` cold, 10 steps ({mb * 3} MB copied)", s,
                             (time.monotonic() - t0) * 1000, "ms")
                    # Five samples a run: one cached build is a few tens of milliseconds, so
                    # one sample per run made the median of three runs scheduler noise.
                    for _ in range(5):
                        t0 = time.monotonic()
                        s.docker("build", "-q", "-t", f"bench-built:{run}", ctx, extra_env=env)
                        self.add("`docker build` fully cached, 10 steps", s,
                                 (time.monotonic() - t0) * 1000, "ms")
                    s.docker("rmi", f"bench-built:{run}")
                except Exception as e:
                    self.failed(s, "build", e)
        self.stop_all()

    def scenario_network(self):
        """Networking, each daemon in a network namespace of its own (the run scenario measures
        `docker run` on the default bridge and with `--network none`): network create + connect
        + disconnect + rm; TCP
        throughput of a stream through a published port from loopback (berth's proxy, dockerd's
        docker-proxy); connections per second to busybox httpd through a published port (wrk)."""
        for s in self.systems:
            s.netns = True
        try:
            self._network()
        finally:
            self.stop_all()
            for s in self.systems:
                s.netns = False

    def _network(self):
        # podman's networking (netavark) would act on the host's namespace: left out here.
        for s in self.systems:
            if s.name == "podman":
                self.skip.add(("network", s.name))
                self.notes.append("podman: network scenario not run (its bridges would be the host's)")
        self.start_all("network")
        mb = 50 if self.args.quick else 1000
        port = 18500
        client = ("import socket,sys,time\n"
                  "n=int(sys.argv[2])*1000000; b=b'x'*1048576; s=socket.create_connection(('127.0.0.1',int(sys.argv[1])))\n"
                  "t=time.monotonic(); sent=0\n"
                  "while sent<n: sent+=s.send(b[:min(len(b),n-sent)])\n"
                  "s.shutdown(socket.SHUT_WR)\n"
                  "while s.recv(65536): pass\n"
                  "print(time.monotonic()-t)")
        for s in self.live("network", 0):
            try:
                s.docker("run", "-d", "--name", "netc", "bench-busybox", "sleep", "100000")
                s.docker("run", "--rm", "bench-busybox", "true")  # warm up
            except Exception as e:
                self.failed(s, "network", e)
        # `docker run --rm busybox true` on the default bridge and with `--network none` is the
        # run scenario's headline (the same daemons, the same namespaces).
        for run in range(self.runs(10)):
            for s in self.live("network", run):
                try:
                    t0 = time.monotonic()
                    s.docker("network", "create", f"bn{run}")
                    s.docker("network", "connect", f"bn{run}", "netc")
                    s.docker("network", "disconnect", f"bn{run}", "netc")
                    s.docker("network", "rm", f"bn{run}")
                    self.add("network create + connect + disconnect + rm", s, (time.monotonic() - t0) * 1000, "ms")
                except Exception as e:
                    self.failed(s, "network", e)
        for run in range(self.runs(3)):
            for s in self.live("network", run):
                try:
                    port += 1
                    name = f"sink{run}"
                    s.docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80", "bench-busybox",
                             "sh", "-c", "nc -l -p 80 > /dev/null")
                    secs = None
                    for _ in range(50):
                        r = s.in_netns("python3", "-c", client, str(port), str(mb), capture_output=True, text=True)
                        if r.returncode == 0:
                            secs = float(r.stdout.strip())
                            break
                        time.sleep(0.1)
                    if secs is None:
                        raise RuntimeError(f"stream through :{port} failed: {r.stderr[-200:]}")
                    self.add(f"TCP stream of {mb} MB through a published port from 127.0.0.1", s,
                             mb / secs, "MB/s", "higher")
                    s.docker("rm", "-f", name)
                except Exception as e:
                    self.failed(s, "network", e)
        wrk = shutil.which("wrk")
        if not wrk:
            self.notes.append("network wrk part skipped: wrk is not installed")
            return
        dur = "1s" if self.args.quick else "10s"
        for s in self.live("network", 0):
            try:
                port += 1
                s.docker("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", "bench-busybox", "sh", "-c",
                         "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 80 -h /www")
                for _ in range(50):
                    if s.in_netns("python3", "-c", f"import socket; socket.create_connection(('127.0.0.1',{port}))",
                                  capture_output=True).returncode == 0:
                        break
                    time.sleep(0.1)
                for run in range(self.runs(3)):
                    out = s.in_netns(wrk, "-t2", "-c16", f"-d{dur}", f"http://127.0.0.1:{port}/",
                                     capture_output=True, text=True).stdout
                    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
                    self.add("httpd through a published port (wrk, 16 connections)", s, rps, "req/s", "higher")
            except Exception as e:
                self.failed(s, "network", e)

    # ----- scale -----

    SCALE_METRICS = [  # (key, row label, unit)
        ("rss", "RSS, daemon + per-container processes", "MiB"),
        ("per", "per-container overhead", "MiB"),
        ("ps", "`docker ps`", "ms"),
        ("inspect", "`docker inspect <one>`", "ms"),
        ("stats", "`docker stats --no-stream`", "ms"),
        ("run", "`docker run --rm busybox true`", "ms"),
        ("ping", "restart → first `/_ping`", "ms"),
        ("reattach", "restart → every container running again", "ms"),
    ]

    def scenario_scale(self):
        """How cost grows: with N running busybox `sleep` containers (N = 10, 100, 500; 2 and
        5 with `--quick`), for berthd and then for dockerd (one at a time, each on its default
        bridge in a network namespace of its own, `--live-restore`): the RSS of the daemon-side processes plus the
        per-container ones and the per-container overhead, the latency of `docker ps`,
        `docker inspect <one>`, `docker stats --no-stream` and `docker run --rm busybox true`,
        and the time a restarted daemon takes to answer `/_ping` and to list every container
        as running again."""
        for s in self.systems:
            if s.name == "podman":
                self.skip.add(("scale", s.name))
                self.notes.append("podman: scale scenario not run (its containers do not run here)")
            s.netns = s.name != "podman"
            s.live_restore = True
        try:
            self._scale()
        finally:
            self.stop_all()
            for s in self.systems:
                s.netns = False
                s.live_restore = False

    def _scale(self):
        sizes = [2, 5] if self.args.quick else [int(x) for x in self.args.scale_sizes.split(",")]
        systems = [s for s in self.systems if s.name != "podman"]
        data = {"sizes": sizes, "unit": {k: u for k, _, u in self.SCALE_METRICS}, "label":
                {k: l for k, l, _ in self.SCALE_METRICS}, "systems": {s.name: {} for s in systems}}
        vals = {s.name: {n: {k: [] for k, _, _ in self.SCALE_METRICS} for n in sizes} for s in systems}
        # One daemon at a time, the others stopped with no container left: every running
        # container adds its mounts to the host's table and its processes to the host, and a
        # container's start slows with the host's mount count whoever owns the mounts (see
        # docs/benchmarks.md, *Why `docker run` slows as containers accumulate*). Filled side
        # by side, each daemon was measured at N with the other's N running as well.
        for s in systems:
            try:
                self._scale_one(s, sizes, vals[s.name])
            except Exception as e:
                self.failed(s, "scale", e)
            try:
                self.empty(s)
            except Exception as e:
                self.notes.append(f"{s.name}: scale clean-up: {str(e)[:200]}")
            s.stop()
        for n in sizes:
            for s in systems:
                for key, label, unit in self.SCALE_METRICS:
                    got = vals[s.name][n][key]
                    for v in got:
                        self.add(f"scale {n}: {label}", s, v, unit)
                    data["systems"][s.name].setdefault(key, []).append(
                        statistics.median(got) if got else None)
        self.scale = data
        self.scale_checks(data)

    def _scale_one(self, s, sizes, vals):
        """The whole series of one daemon: its idle RSS, then at each size its figures."""
        s.start()
        self.image(s)
        s.docker("run", "--rm", "bench-busybox", "true")  # warm up
        time.sleep(1)
        idle = sum(rss_kib(p) for p in s.daemon_pids())
        have = 0
        for n in sizes:
            t0 = time.monotonic()
            self.fill(s, have, n)
            have = n
            log(f"scale: {s.name}: {n} running ({time.monotonic() - t0:.0f} s to fill)")
            time.sleep(2)
            got = vals[n]
            ids = s.docker("ps", "-q", "--no-trunc").stdout.decode().split()
            if len(ids) != n:
                raise RuntimeError(f"{len(ids)} running, {n} expected")
            pids = s.docker("inspect", "--format", "{{.State.Pid}}", *ids).stdout.decode().split()
            per = {ppid(int(p)) for p in pids if int(p)}
            kib = sum(rss_kib(p) for p in s.daemon_pids()) + sum(rss_kib(p) for p in per)
            got["rss"].append(kib / 1024)
            got["per"].append((kib - idle) / n / 1024)
            one = "scale0"
            for _ in range(self.runs(5)):
                for key, args in [("ps", ["ps"]), ("inspect", ["inspect", one]),
                                  ("stats", ["stats", "--no-stream"]),
                                  ("run", ["run", "--rm", "bench-busybox", "true"])]:
                    t0 = time.monotonic()
                    s.docker(*args, stdout=subprocess.DEVNULL, timeout=600)
                    got[key].append((time.monotonic() - t0) * 1000)
            got["ping"].append(s.restart())
            deadline = time.monotonic() + 600
            while True:
                running = [c for c in s.api("GET", "/containers/json") if c.get("State") == "running"]
                if len(running) >= n:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"after the restart only {len(running)} of {n} running")
                time.sleep(0.005)
            got["reattach"].append((time.monotonic() - s.spawned) * 1000)
            s.docker("run", "--rm", "bench-busybox", "true")  # serves containers again

    def fill(self, s, have, n, parallel=4):
        """Containers scale<have>..scale<n-1>: `docker run -d busybox sleep`, `parallel` at a
        time."""
        todo = list(range(have, n))
        errors = []
        lock = threading.Lock()

        def worker():
            while True:
                with lock:
                    if not todo or errors:
                        return
                    i = todo.pop(0)
                r = s.docker("run", "-d", "--name", f"scale{i}", "bench-busybox", "sleep", "100000", check=False)
                if r.returncode != 0:
                    errors.append(f"scale{i}: {r.stderr.decode().strip()[:200]}")

        threads = [threading.Thread(target=worker) for _ in range(parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError(errors[0])

    def empty(self, s):
        ids = s.docker("ps", "-aq").stdout.decode().split()
        for k in range(0, len(ids), 50):
            s.docker("rm", "-f", *ids[k:k + 50], check=False, timeout=600)

    def scale_checks(self, data):
        sizes = data["sizes"]
        if len(sizes) < 2:
            return
        a, b = sizes[-2], sizes[-1]
        sysd = data["systems"]
        growth = []
        for key, label, unit in self.SCALE_METRICS:
            for name, m in sysd.items():
                v = m.get(key) or []
                if len(v) == len(sizes) and v[-2] and v[-1] is not None:
                    growth.append((name, key, v[-1] / v[-2]))
        data["growth"] = {f"{name} {key}": round(g, 2) for name, key, g in growth}
        bad = [f"{name} {key} ×{g:.1f}" for name, key, g in growth if name == "berth" and g > b / a]
        self.check(f"scale: nothing of berth's grows faster than linearly ({a} → {b}: factor ≤ {b / a:g})",
                   ", ".join(f"{key} ×{g:.2f}" for name, key, g in growth if name == "berth"), not bad)
        if "dockerd" in sysd and "berth" in sysd:
            worse = []
            parts = []
            for key, label, unit in self.SCALE_METRICS:
                bv, dv = (sysd["berth"].get(key) or [None])[-1], (sysd["dockerd"].get(key) or [None])[-1]
                if bv is not None and dv:
                    parts.append(f"{key} {bv / dv:.2f}")
                    if bv > 0.25 * dv:
                        worse.append(key)
            self.check(f"scale: at {b} containers berth ≤ 1/4 of dockerd", ", ".join(parts), not worse)

    def scenario_images(self):
        self.start_all("images")
        mb = 20 if self.args.quick else 200
        img = os.path.join(self.work, "img.tar")
        subprocess.run([sys.executable, os.path.join(HERE, "make-image.py"), img, str(mb)], check=True,
                       stdout=subprocess.DEVNULL)
        registry = shutil.which("docker-registry")
        reg = None
        if registry:
            port = free_port()
            cfg = os.path.join(self.work, "registry.yml")
            with open(cfg, "w") as f:
                f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {self.work}/registry\n"
                        f"http:\n  addr: 127.0.0.1:{port}\n")
            reg = subprocess.Popen([registry, "serve", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
        else:
            self.notes.append("push/pull skipped: docker-registry is not installed")
        try:
            for run in range(self.runs(3)):
                for s in self.live("images", run):
                    try:
                        s.docker("rmi", "-f", "bench/img:1", check=False)
                        t0 = time.monotonic()
                        s.docker("load", "-q", "-i", img)
                        self.add(f"`docker load` {mb} MB", s, (time.monotonic() - t0) * 1000, "ms")
                        out = os.path.join(s.dir, "saved.tar")
                        t0 = time.monotonic()
                        s.docker("save", "-o", out, "bench/img:1")
                        self.add(f"`docker save` {mb} MB", s, (time.monotonic() - t0) * 1000, "ms")
                        os.unlink(out)
                        if reg and s.name != "podman":
                            ref = f"127.0.0.1:{port}/{s.name}/img:{run}"
                            s.docker("tag", "bench/img:1", ref)
                            t0 = time.monotonic()
                            s.docker("push", ref)
                            self.add(f"`docker push` {mb} MB", s, (time.monotonic() - t0) * 1000, "ms")
                            s.docker("rmi", "-f", ref, "bench/img:1")
                            t0 = time.monotonic()
                            s.docker("pull", "-q", ref)
                            self.add(f"`docker pull` {mb} MB", s, (time.monotonic() - t0) * 1000, "ms")
                            s.docker("rmi", "-f", ref, check=False)
                    except Exception as e:
                        self.failed(s, "images", e)
        finally:
            if reg:
                reg.terminate()
                reg.wait()
        self.stop_all()

    # ----- report -----

    def checks_header(self):
        return "#### Targets in this run\n\n| target | result | |\n|---|---|---|"

    def checks_table(self):
        if not self.checks:
            return ""
        rows = self.checks_header().split("\n")
        rows += [f"| {t} | {v} | {ok} |" for t, v, ok in self.checks]
        return "\n".join(rows)

    def table(self):
        names = [s.name for s in self.systems]
        head = "| scenario | unit | " + " | ".join(f"{n} min / median / max" for n in names)
        others = [n for n in names if n != "berth"]
        head += "".join(f" | berth / {o}" for o in others) + " |"
        sep = "|---|---|" + "---|" * len(names) + "---|" * len(others)
        rows = [head, sep]
        seen = []
        for (sc, _) in self.results:
            if sc not in seen:
                seen.append(sc)
        for sc in seen:
            unit = self.units[sc]
            fmt = (lambda v: f"{v:.0f}") if unit in ("ms", "req/s") else (lambda v: f"{v:.1f}")
            cells = []
            med = {}
            for n in names:
                vals = self.results.get((sc, n))
                if not vals:
                    cells.append("—")
                    continue
                lo, mid, hi = stats(vals)
                med[n] = mid
                cells.append(f"{fmt(lo)} / **{fmt(mid)}** / {fmt(hi)}" if len(vals) > 1 else f"**{fmt(mid)}**")
            ratios = []
            for o in others:
                if "berth" in med and med.get(o):
                    ratios.append(f"{med['berth'] / med[o]:.2f}")
                else:
                    ratios.append("—")
            rows.append(f"| {sc} | {unit} | " + " | ".join(cells) + "".join(f" | {r}" for r in ratios) + " |")
        return "\n".join(rows)


def write_scale(data, out, meta=None):
    """scale.json and the plots (matplotlib): time and memory against the number of running
    containers, berth beside dockerd."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "scale.json"), "w") as f:
        json.dump(dict(data, date=time.strftime("%Y-%m-%d", time.gmtime()), **(meta or {})), f, indent=1)
        f.write("\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("plots skipped: matplotlib is missing (apt-get install python3-matplotlib)")
        return
    sizes = data["sizes"]
    colors = {"berth": "tab:blue", "dockerd": "tab:orange"}

    def draw(keys, name, cols):
        rows = (len(keys) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
        for ax, key in zip(axes.flat, keys):
            for system, m in data["systems"].items():
                pts = [(n, v) for n, v in zip(sizes, m.get(key) or []) if v is not None]
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=system,
                            color=colors.get(system))
            ax.set_title(data["label"][key], fontsize=10)
            ax.set_xlabel("running containers")
            ax.set_ylabel(data["unit"][key])
            # A linear axis: linear growth draws a straight line.
            ax.set_xticks(sizes)
            ax.set_xlim(left=0)
            ax.set_ylim(bottom=0)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        for ax in list(axes.flat)[len(keys):]:
            ax.axis("off")
        fig.tight_layout()
        path = os.path.join(out, name)
        fig.savefig(path, dpi=90)
        plt.close(fig)
        log(f"wrote {path}")

    draw(["ps", "inspect", "stats", "run", "ping", "reattach"], "scale-time.png", 3)
    draw(["rss", "per"], "scale-memory.png", 2)


def versions(systems, berthd):
    v = []
    for s in systems:
        if s.name == "berth":
            v.append(subprocess.run([berthd, "--version"], capture_output=True, text=True).stdout.strip())
        elif s.name == "dockerd":
            v.append(subprocess.run(["/usr/sbin/dockerd", "--version"], capture_output=True, text=True).stdout.strip())
        else:
            v.append(subprocess.run(["podman", "--version"], capture_output=True, text=True).stdout.strip())
    return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--install-anchors", action="store_true")
    ap.add_argument("--runs", type=int, default=0, help="override the runs of every scenario")
    ap.add_argument("--no-docs", action="store_true")
    ap.add_argument("--plot-dir", default="", help="write scale.json and the plots here (default: "
                    "docs/bench/, not with --no-docs or --quick)")
    ap.add_argument("--only", default="start,run,wrk,many,logs,images,storage,network,stats,build,scale")
    ap.add_argument("--berthd", default="")
    ap.add_argument("--floor", default="", help="the container-floor binary (bench/floor.rs)")
    ap.add_argument("--scale-sizes", default="10,100,500", help="the scale scenario's numbers of containers")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/run.sh needs root")
    # A SIGTERM (timeout, CI) still runs the clean-up below: daemons stopped, mounts gone.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.install_anchors:
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker.io", "podman", "wrk"],
                       check=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(TOP, "target")
    berthd = args.berthd or os.path.join(target, "release", "berthd")
    if not os.path.exists(berthd):
        debug = os.path.join(target, "debug", "berthd")
        if args.quick and os.path.exists(debug):
            berthd = debug
        else:
            subprocess.run(["cargo", "build", "--release", "--locked"], cwd=TOP, check=True)
    floor = args.floor or os.path.join(target, "release", "examples", "container-floor")
    if not args.floor and args.berthd:  # the one built beside that berthd
        floor = os.path.join(os.path.dirname(os.path.abspath(berthd)), "examples", "container-floor")
    if not args.floor and not os.path.exists(floor):
        debug = os.path.join(target, "debug", "examples", "container-floor")
        if args.quick:
            floor = debug  # `cargo test` builds the examples; CI does not build a release one
        elif "run" in args.only.split(","):
            subprocess.run(["cargo", "build", "--release", "--locked", "--example", "container-floor"],
                           cwd=TOP, check=True)
    work = tempfile.mkdtemp(prefix="berth-bench.", dir="/var/tmp")
    systems = [System("berth", work, berthd)]
    if not args.quick:
        if os.path.exists("/usr/sbin/dockerd"):
            systems.append(System("dockerd", work))
        if shutil.which("podman"):
            systems.append(System("podman", work))
    b = Bench(args, work, systems)
    b.floor = floor
    if args.runs:
        b.runs = lambda n: args.runs
    scenarios = {"start": b.scenario_start, "run": b.scenario_run_and_api, "wrk": b.scenario_wrk,
                 "many": b.scenario_many, "logs": b.scenario_logs, "images": b.scenario_images,
                 "storage": b.scenario_storage, "network": b.scenario_network,
                 "stats": b.scenario_stats, "build": b.scenario_build, "scale": b.scenario_scale}
    failed = []
    try:
        for name in args.only.split(","):
            log(f"== {name}")
            try:
                scenarios[name]()
            except Exception as e:  # one broken scenario (or system) must not hide the others
                failed.append(f"{name}: {e}")
                log(f"scenario {name} failed: {e}")
                b.stop_all()
    finally:
        b.stop_all()
        subprocess.run(["sh", "-c", f"grep -o '{work}[^ ]*' /proc/self/mounts | sort -r | xargs -r umount -l"],
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
    table = b.table()
    print(table)
    checks = b.checks_table()
    if checks:
        print("\n" + checks)
    for n in b.notes + failed:
        print(f"- {n}")
    if b.scale and not args.quick:
        out = args.plot_dir or (None if args.no_docs else os.path.join(TOP, "docs", "bench"))
        if out:
            write_scale(b.scale, out, {
                "versions": versions([s for s in systems if s.name != "podman"], berthd),
                "machine": f"{os.cpu_count()} CPUs, kernel {os.uname().release}",
                "load_average": os.getloadavg()})
    if failed and args.quick:
        sys.exit(1)
    if args.quick or args.no_docs:
        return
    kernel = os.uname().release
    mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    cg = "v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "v1"
    path = os.path.join(TOP, "docs", "benchmarks.md")
    text = open(path).read()
    if args.only != ap.get_default("only"):
        # A partial run keeps the rows (and the target lines) of the scenarios it did not measure.
        m = re.search(r"<!-- bench:begin -->(.*?)<!-- bench:end -->", text, flags=re.S)
        new_scenarios = {sc for (sc, _) in b.results}
        mine = {c[0] for c in b.checks}
        kept, old = [], []
        if m:
            main_part, _, check_part = m.group(1).partition("#### Targets in this run")
            for line in main_part.splitlines():
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                if line.startswith("| ") and len(cells) > 2 and cells[0] not in ("scenario",) \
                        and not cells[0].startswith("---") and cells[0] not in new_scenarios:
                    kept.append(line)
            for line in check_part.splitlines():
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                if line.startswith("| ") and len(cells) == 3 and cells[0] not in mine | {"target"}:
                    old.append(line)
        if kept:
            lines = table.split("\n")
            table = "\n".join(lines[:2] + kept + lines[2:])
        if old:
            lines = (checks or b.checks_header()).split("\n")
            checks = "\n".join(lines[:4] + old + lines[4:])
    block = ("<!-- bench:begin -->\n### All scenarios\n\n"
             f"Measured by `bench/run.sh` on {time.strftime('%Y-%m-%d', time.gmtime())}: {os.cpu_count()} CPUs, "
             f"{mem} GiB, kernel {kernel}, cgroup {cg}; {'; '.join(versions(systems, berthd))}. "
             "berthd and dockerd get the options a user types: in the run, many, network and scale "
             "scenarios each runs in a network namespace of its own with its default bridge (berth0, "
             "docker0), elsewhere with `--bridge=none --iptables=false` (dockerd also "
             "`--ip-masq=false`); podman runs as `podman system service` with private "
             "`--root`/`--runroot`, and only its containers get `--network none --ulimit nofile=1024:1024 "
             f"--ulimit nproc={_NPROC}:{_NPROC}` (its runc needs the limits). "
             "Medians in bold; a ratio below 1 means berth is lower (for req/s: higher is better).\n\n"
             + table + "\n" + (f"\n{checks}\n" if checks else "")
             + "".join(f"\n- {n}" for n in b.notes + failed) + "\n<!-- bench:end -->")
    if "<!-- bench:begin -->" in text:
        text = re.sub(r"<!-- bench:begin -->.*?<!-- bench:end -->", lambda m: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    open(path, "w").write(text)
    log("updated docs/benchmarks.md")


if __name__ == "__main__":
    main()
