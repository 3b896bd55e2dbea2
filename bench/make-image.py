#!/usr/bin/env python3
"""Write a docker-archive of a multi-layer image (~200 MB) for the image benchmarks.

Layers: busybox-static with its applets, then three layers of real files copied from this
machine (shared libraries, /usr/share, Python's standard library), so that the content
compresses like a real image.  Usage: make-image.py OUT.tar [TARGET_MB]
"""
import hashlib, io, json, os, sys, tarfile, time

out = sys.argv[1]
target = int(sys.argv[2]) if len(sys.argv) > 2 else 200
budget = target * 1024 * 1024


def layer_from_dirs(dirs, limit):
    buf = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for d in dirs:
            for root, subdirs, files in os.walk(d):
                subdirs.sort()
                for f in sorted(files):
                    p = os.path.join(root, f)
                    if not os.path.isfile(p) or os.path.islink(p):
                        continue
                    size = os.path.getsize(p)
                    if total + size > limit:
                        if total > limit * 0.95:
                            return buf.getvalue()
                        continue
                    info = t.gettarinfo(p, arcname=p.lstrip("/"))
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    with open(p, "rb") as fh:
                        t.addfile(info, fh)
                    total += size
    return buf.getvalue()


def busybox_layer():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for d in ["bin", "etc", "tmp"]:
            i = tarfile.TarInfo(d); i.type = tarfile.DIRTYPE; i.mode = 0o755; i.mtime = 1700000000; t.addfile(i)
        data = open("/bin/busybox", "rb").read()
        i = tarfile.TarInfo("bin/busybox"); i.size = len(data); i.mode = 0o755; i.mtime = 1700000000
        t.addfile(i, io.BytesIO(data))
        for a in os.popen("/bin/busybox --list").read().split():
            if a == "busybox":
                continue
            i = tarfile.TarInfo("bin/" + a); i.type = tarfile.SYMTYPE; i.linkname = "busybox"; i.mtime = 1700000000
            t.addfile(i)
    return buf.getvalue()


layers = [busybox_layer()]
groups = (["/usr/lib/python3.11", "/usr/lib/python3"], ["/usr/share"], ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"])
for n, dirs in enumerate(groups):
    dirs = [d for d in dirs if os.path.isdir(d)]
    rest = budget - sum(map(len, layers))
    layers.append(layer_from_dirs(dirs, rest // (len(groups) - n)))
diff_ids = ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]
config = json.dumps({
    "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine),
    "os": "linux",
    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "config": {"Cmd": ["/bin/sh"]},
    "rootfs": {"type": "layers", "diff_ids": diff_ids},
    "history": [{"created_by": "bench layer %d" % i} for i in range(len(layers))],
}).encode()
cfg_hex = hashlib.sha256(config).hexdigest()
with tarfile.open(out, "w") as t:
    def add(name, data):
        i = tarfile.TarInfo(name); i.size = len(data); i.mode = 0o644
        t.addfile(i, io.BytesIO(data))
    add("blobs/sha256/" + cfg_hex, config)
    for d, l in zip(diff_ids, layers):
        add("blobs/sha256/" + d[7:], l)
    add("manifest.json", json.dumps([{
        "Config": "blobs/sha256/" + cfg_hex,
        "RepoTags": ["bench/img:1"],
        "Layers": ["blobs/sha256/" + d[7:] for d in diff_ids],
    }]).encode())
print("%s: %d layers, %.0f MB" % (out, len(layers), sum(map(len, layers)) / 1e6))
