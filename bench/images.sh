#!/usr/bin/env bash
# Image throughput, berth against dockerd side by side: `docker load` of a ~200 MB, 4-layer
# docker-archive, and `docker pull` of the same image from a local registry (Debian's
# docker-registry on 127.0.0.1). Runs alternate between the systems so that ratios hold on a
# noisy machine. Prints min / median / max per system and the ratio, and rewrites the images
# table in docs/benchmarks.md.
#
# Usage (as root): bench/images.sh [--runs N] [--no-docs]
# dockerd is compared when /usr/sbin/dockerd exists (Debian's docker.io); it runs on private
# sockets and data roots with --bridge=none --iptables=false --ip-masq=false.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
runs=5
docs=1
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --no-docs) docs=0; shift ;;
    *) echo "usage: $0 [--runs N] [--no-docs]" >&2; exit 2 ;;
  esac
done

[ "$(id -u)" = 0 ] || { echo "bench/images.sh needs root" >&2; exit 1; }
command -v docker-registry >/dev/null || { echo "needs docker-registry (apt-get install docker-registry)" >&2; exit 1; }
[ -x "$top/target/release/berthd" ] || (cd "$top" && cargo build --release --locked)
berthd="$top/target/release/berthd"

work=$(mktemp -d /var/tmp/berth-bench-images.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 1 100); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

systems=(berth)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<EOR
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
EOR
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pids+=($!)

echo '{}' > "$work/berth.json"
"$berthd" -H "unix://$work/berth.sock" --data-root "$work/berth-root" --exec-root "$work/berth-exec" \
  --pidfile "$work/berth.pid" --config-file "$work/berth.json" >"$work/berth.log" 2>&1 &
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
  for _ in $(seq 1 200); do dk "$sys" version >/dev/null 2>&1 && break; sleep 0.1; done
  dk "$sys" version >/dev/null || { echo "$sys did not start; see $work/$sys.log" >&2; cat "$work/$sys.log" >&2; exit 1; }
done

python3 "$here/make-image.py" "$work/img.tar" 200
image="127.0.0.1:$port/bench/img:1"
dk berth load -q -i "$work/img.tar" >/dev/null
dk berth tag bench/img:1 "$image"
dk berth push "$image" >/dev/null

now() { date +%s%N; }
declare -A results
for run in $(seq 1 "$runs"); do
  order=("${systems[@]}")
  if [ $((run % 2)) = 0 ]; then order=($(printf '%s\n' "${systems[@]}" | tac)); fi
  for sys in "${order[@]}"; do
    dk "$sys" rmi -f bench/img:1 "$image" >/dev/null 2>&1 || true
    t0=$(now); dk "$sys" load -q -i "$work/img.tar" >/dev/null; t1=$(now)
    results[$sys.load]+="$(( (t1 - t0) / 1000000 )) "
    dk "$sys" rmi -f bench/img:1 "$image" >/dev/null 2>&1 || true
    t0=$(now); dk "$sys" pull -q "$image" >/dev/null; t1=$(now)
    results[$sys.pull]+="$(( (t1 - t0) / 1000000 )) "
  done
  echo "run $run/$runs done"
done

stats() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {printf "%d %d %d", a[1], a[int((NR+1)/2)], a[NR]}'; }
table="| scenario | system | min ms | median ms | max ms | berth / dockerd (median) |
|---|---|---|---|---|---|"
for sc in load pull; do
  read -r bmin bmed bmax <<<"$(echo "${results[berth.$sc]}" | stats)"
  ratio="—"
  if [ -n "${results[dockerd.$sc]:-}" ]; then
    read -r dmin dmed dmax <<<"$(echo "${results[dockerd.$sc]}" | stats)"
    ratio=$(python3 -c "print('%.2f' % ($bmed / $dmed))")
    table+="
| $sc | dockerd | $dmin | $dmed | $dmax | |"
  fi
  table+="
| $sc | berth | $bmin | $bmed | $bmax | $ratio |"
done
echo
echo "$table"

if [ "$docs" = 1 ]; then
  kernel=$(uname -r)
  dver=$( [ -x /usr/sbin/dockerd ] && /usr/sbin/dockerd --version || echo "not installed")
  block="<!-- images:begin -->
### Images: \`docker load\` and \`docker pull\` of a 210 MB, 4-layer image

Measured by \`bench/images.sh --runs $runs\` on $(date -u +%Y-%m-%d): $(nproc) CPUs, $(free -g | awk '/Mem:/{print $2}') GiB, kernel $kernel,
berth $("$berthd" --version | sed 's/^berthd //'), $dver, registry: Debian docker-registry on 127.0.0.1.
Lower is better; the ratio is berth's median over dockerd's.

$table
<!-- images:end -->"
  python3 - "$top/docs/benchmarks.md" "$block" <<'EOP'
import re, sys
path, block = sys.argv[1], sys.argv[2]
text = open(path).read()
if "<!-- images:begin -->" in text:
    text = re.sub(r"<!-- images:begin -->.*?<!-- images:end -->", lambda m: block, text, flags=re.S)
else:
    text = text.rstrip() + "\n\n" + block + "\n"
open(path, "w").write(text)
EOP
  echo "updated docs/benchmarks.md"
fi
