#!/usr/bin/env bash
# Container start-up, berth against dockerd side by side: `docker run --rm busybox true` through
# the CLI, and the raw API create -> start -> wait -> delete (with `start` alone), medians of N
# runs, systems alternating run by run. Also the memory of a running container's supervisor and
# of the idle daemon. Rewrites the containers table in docs/benchmarks.md.
#
# Usage (as root): bench/containers.sh [--runs N] [--no-docs]
# dockerd is compared when /usr/sbin/dockerd exists (Debian's docker.io), on private sockets and
# data roots with --bridge=none --iptables=false --ip-masq=false.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
runs=20
docs=1
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --no-docs) docs=0; shift ;;
    *) echo "usage: $0 [--runs N] [--no-docs]" >&2; exit 2 ;;
  esac
done

[ "$(id -u)" = 0 ] || { echo "bench/containers.sh needs root" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "needs busybox-static (apt-get install busybox-static)" >&2; exit 1; }
[ -x "$top/target/release/berthd" ] || (cd "$top" && cargo build --release --locked)
berthd="$top/target/release/berthd"

work=$(mktemp -d /var/tmp/berth-bench-containers.XXXXXX)
pids=()
cleanup() {
  for sys in berth dockerd; do
    [ -S "$work/$sys.sock" ] && DOCKER_HOST="unix://$work/$sys.sock" docker rm -f bench-idle >/dev/null 2>&1 || true
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 1 100); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  grep -o "$work[^ ]*" /proc/self/mounts 2>/dev/null | sort -r | xargs -r umount -l 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

systems=(berth)
echo '{}' > "$work/berth.json"
"$berthd" -H "unix://$work/berth.sock" --data-root "$work/berth-root" --exec-root "$work/berth-exec" \
  --pidfile "$work/berth.pid" --config-file "$work/berth.json" --cgroup-parent berth-bench >"$work/berth.log" 2>&1 &
pids+=($!)
if [ -x /usr/sbin/dockerd ]; then
  systems+=(dockerd)
  echo '{}' > "$work/dockerd.json"
  /usr/sbin/dockerd -H "unix://$work/dockerd.sock" --data-root "$work/dockerd-root" --exec-root "$work/dockerd-exec" \
    --pidfile "$work/dockerd.pid" --config-file "$work/dockerd.json" --bridge=none --iptables=false --ip-masq=false \
    >"$work/dockerd.log" 2>&1 &
  pids+=($!)
fi

dk() { local sys=$1; shift; DOCKER_HOST="unix://$work/$sys.sock" DOCKER_CONFIG="$work/docker-config" docker "$@"; }
for sys in "${systems[@]}"; do
  for _ in $(seq 1 300); do dk "$sys" version >/dev/null 2>&1 && break; sleep 0.1; done
  dk "$sys" version >/dev/null || { echo "$sys did not start; see $work/$sys.log" >&2; cat "$work/$sys.log" >&2; exit 1; }
done

# The same busybox-static image in every system.
python3 - "$work/busybox.tar" <<'EOP'
import io, subprocess, sys, tarfile
t = tarfile.open(sys.argv[1], "w")
for name, mode in [("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("root", 0o700), ("proc", 0o755), ("sys", 0o755), ("dev", 0o755)]:
    i = tarfile.TarInfo(name); i.type = tarfile.DIRTYPE; i.mode = mode; t.addfile(i)
t.add("/bin/busybox", "bin/busybox")
for a in subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout.split():
    if a != "busybox":
        i = tarfile.TarInfo("bin/" + a); i.type = tarfile.SYMTYPE; i.linkname = "busybox"; t.addfile(i)
for path, text in [("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"), ("etc/group", "root:x:0:\n")]:
    b = text.encode(); i = tarfile.TarInfo(path); i.size = len(b); i.mode = 0o644; t.addfile(i, io.BytesIO(b))
t.close()
EOP
for sys in "${systems[@]}"; do
  dk "$sys" import "$work/busybox.tar" bench-busybox:latest >/dev/null
  dk "$sys" run --rm bench-busybox true   # warm up
done

# One API lifecycle over the Unix socket: prints "total_ms start_ms".
cat > "$work/lifecycle.py" <<'EOP'
import json, socket, sys, time
sock = sys.argv[1]
def req(method, path, body=None):
    s = socket.socket(socket.AF_UNIX); s.connect(sock)
    data = json.dumps(body).encode() if body is not None else b""
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
    out = b""
    while True:
        d = s.recv(65536)
        if not d: break
        out += d
    s.close()
    status = int(out.split(b" ", 2)[1])
    if status >= 300:
        sys.exit(f"{method} {path}: {out!r}")
    return out.split(b"\r\n\r\n", 1)[1]
t0 = time.time()
body = req("POST", "/v1.41/containers/create", {"Image": "bench-busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"}})
cid = json.loads(body[body.index(b"{"):body.rindex(b"}") + 1])["Id"]
t1 = time.time(); req("POST", f"/v1.41/containers/{cid}/start"); t2 = time.time()
req("POST", f"/v1.41/containers/{cid}/wait")
req("DELETE", f"/v1.41/containers/{cid}")
t3 = time.time()
print("%d %d" % ((t3 - t0) * 1000, (t2 - t1) * 1000))
EOP

now() { date +%s%N; }
declare -A results
for run in $(seq 1 "$runs"); do
  order=("${systems[@]}")
  if [ $((run % 2)) = 0 ]; then order=($(printf '%s\n' "${systems[@]}" | tac)); fi
  for sys in "${order[@]}"; do
    t0=$(now); dk "$sys" run --rm --network none bench-busybox true; t1=$(now)
    results[$sys.run]+="$(( (t1 - t0) / 1000000 )) "
    read -r total start <<<"$(python3 "$work/lifecycle.py" "$work/$sys.sock")"
    results[$sys.api]+="$total "
    results[$sys.start]+="$start "
  done
done

# Memory: the daemon idle, then the per-container processes of one running container.
rss_kib() { awk '/^VmRSS/ {s+=$2} END {print s+0}' "$@" 2>/dev/null; }
pss_kib() { awk '/^Pss:/ {s+=$2} END {print s+0}' "$@" 2>/dev/null; }
declare -A mem
for sys in "${systems[@]}"; do
  dpid=$(cat "$work/$sys.pid")
  sleep 1
  mem[$sys.idle]=$(rss_kib /proc/"$dpid"/status)
  dk "$sys" run -d --name bench-idle --network none bench-busybox sleep 600 >/dev/null
  sleep 1
  cpid=$(dk "$sys" inspect --format '{{.State.Pid}}' bench-idle)
  # The container's own process's parent: berth's supervisor, or dockerd's containerd-shim.
  ppid=$(awk '{print $4}' /proc/"$cpid"/stat)
  mem[$sys.sup_rss]=$(rss_kib /proc/"$ppid"/status)
  mem[$sys.sup_pss]=$(pss_kib /proc/"$ppid"/smaps_rollup)
  mem[$sys.sup_name]=$(tr '\0' ' ' < /proc/"$ppid"/cmdline | cut -c1-40)
  dk "$sys" rm -f bench-idle >/dev/null
done

stats() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {printf "%d %d %d", a[1], a[int((NR+1)/2)], a[NR]}'; }
table="| scenario | system | min ms | median ms | max ms | berth / dockerd (median) |
|---|---|---|---|---|---|"
for sc in run api start; do
  case $sc in
    run) label='`docker run --rm busybox true`' ;;
    api) label='API create → start → wait → delete' ;;
    start) label='… of which `start`' ;;
  esac
  read -r bmin bmed bmax <<<"$(echo "${results[berth.$sc]}" | stats)"
  ratio="—"
  if [ -n "${results[dockerd.$sc]:-}" ]; then
    read -r dmin dmed dmax <<<"$(echo "${results[dockerd.$sc]}" | stats)"
    ratio=$(python3 -c "print('%.2f' % ($bmed / max($dmed, 1)))")
    table+="
| $label | dockerd | $dmin | $dmed | $dmax | |"
  fi
  table+="
| $label | berth | $bmin | $bmed | $bmax | $ratio |"
done
memtable="| system | daemon idle RSS MiB | per-container process | its RSS MiB | its PSS MiB |
|---|---|---|---|---|"
for sys in "${systems[@]}"; do
  memtable+="
| $sys | $(python3 -c "print('%.1f' % (${mem[$sys.idle]} / 1024))") | \`${mem[$sys.sup_name]}\` | $(python3 -c "print('%.1f' % (${mem[$sys.sup_rss]} / 1024))") | $(python3 -c "print('%.1f' % (${mem[$sys.sup_pss]} / 1024))") |"
done
echo
echo "$table"
echo
echo "$memtable"

if [ "$docs" = 1 ]; then
  kernel=$(uname -r)
  dver=$( [ -x /usr/sbin/dockerd ] && /usr/sbin/dockerd --version || echo "not installed")
  block="<!-- containers:begin -->
### Containers: start-up and memory

Measured by \`bench/containers.sh --runs $runs\` on $(date -u +%Y-%m-%d): $(nproc) CPUs, $(free -g | awk '/Mem:/{print $2}') GiB, kernel $kernel,
berth $("$berthd" --version | sed 's/^berthd //'), $dver (\`--bridge=none\`); both with \`--network none\`.
Lower is better; the ratio is berth's median over dockerd's.

$table

$memtable
<!-- containers:end -->"
  python3 - "$top/docs/benchmarks.md" "$block" <<'EOP'
import re, sys
path, block = sys.argv[1], sys.argv[2]
text = open(path).read()
if "<!-- containers:begin -->" in text:
    text = re.sub(r"<!-- containers:begin -->.*?<!-- containers:end -->", lambda m: block, text, flags=re.S)
else:
    text = text.rstrip() + "\n\n" + block + "\n"
open(path, "w").write(text)
EOP
  echo "updated docs/benchmarks.md"
fi
