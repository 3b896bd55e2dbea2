#!/usr/bin/env python3
"""Write the seed inputs of every fuzz target under fuzz/seeds/<target>/ (run from fuzz/).

The committed corpora (fuzz/corpus/<target>/) started from these seeds and were minimised with
`cargo fuzz cmin` after the runs recorded in docs/hardening.md."""
import base64, io, json, os, struct, sys, tarfile

out = sys.argv[1] if len(sys.argv) > 1 else "seeds"


def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# router: path?query
for i, s in enumerate([
    "/v1.51/containers/abc/json?all=1&filters=%7B%22status%22%3A%5B%22running%22%5D%7D",
    "/images/docker.io%2Flibrary%2Fbusybox/json",
    "/images/localhost:5000/a/b:1/push?tag=x",
    "/v1.24/_ping",
    "/networks/my/net",
    "/v1.99/info?x=1&x=2&tail=-3&force=no",
    "/v1/containers/create?name=%zz",
    "//v1.41//volumes/a%2Fb",
]):
    put("router", f"seed{i}", s)

# filters: both encodings
for i, s in enumerate([
    '{"label":{"a=b":true,"c":true}}',
    '{"label":["a=b"],"status":["running","exited"]}',
    "",
    '{"dangling":{"true":true,"false":false}}',
    '{"name":[1]}',
]):
    put("filters", f"seed{i}", s)

# registry_auth: selector byte + header value
def b64u(s):
    return base64.urlsafe_b64encode(s.encode()).decode()
put("registry_auth", "auth", b"\0" + b64u('{"username":"u","password":"p","serveraddress":"localhost:5000"}').encode())
put("registry_auth", "auth_field", b"\0" + base64.b64encode(b'{"auth":"dTpw"}').rstrip(b"="))
put("registry_auth", "anon", b"\0e30")
put("registry_auth", "config", b"\1" + b64u('{"localhost:5000":{"username":"u","password":"p"},"https://index.docker.io/v1/":{"auth":"dTpw"}}').encode())

# reference
digest = "sha256:" + "0123456789abcdef" * 4
for i, s in enumerate([
    "busybox", "localhost:5000/a/b:1.0", f"docker.io/library/busybox@{digest}",
    "[::1]:5000/x:tag", "Example.com/x", f"a/b:c@{digest}", "index.docker.io/foo", "a__b/c.d-e",
]):
    put("reference", f"seed{i}", s)


def tar(entries, fmt=tarfile.GNU_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for e in entries:
            ti = tarfile.TarInfo(e["name"])
            ti.type = e.get("type", tarfile.REGTYPE)
            ti.mode = e.get("mode", 0o644)
            ti.linkname = e.get("link", "")
            data = e.get("data", b"")
            ti.size = len(data) if ti.type == tarfile.REGTYPE else 0
            if "dev" in e:
                ti.devmajor, ti.devminor = e["dev"]
            if "pax" in e:
                ti.pax_headers = e["pax"]
            t.addfile(ti, io.BytesIO(data) if ti.size else None)
    return buf.getvalue()

D, S, H, C = tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE
tars = {
    "plain": tar([{"name": "etc/", "type": D, "mode": 0o755}, {"name": "etc/hosts", "data": b"127.0.0.1 localhost\n"}, {"name": "bin/sh", "data": b"#!x\n" * 40}]),
    "dotdot": tar([{"name": "../escape", "data": b"x"}, {"name": "a/../../escape2", "data": b"y"}]),
    "absolute": tar([{"name": "/abs", "data": b"z"}]),
    "symlink_dir": tar([{"name": "esc", "type": S, "link": "../sentinel"}, {"name": "esc/pwned", "data": b"p"}]),
    "symlink_abs": tar([{"name": "esc", "type": S, "link": "/"}, {"name": "esc/pwned", "data": b"p"}]),
    "hardlink": tar([{"name": "h", "type": H, "link": "../outside"}, {"name": "h2", "type": H, "link": "/etc/passwd"}]),
    "whiteouts": tar([{"name": "d/", "type": D, "mode": 0o755}, {"name": "d/.wh..wh..opq"}, {"name": ".wh.gone"}, {"name": "d/.wh.x"}]),
    "device": tar([{"name": "null", "type": C, "dev": (1, 3), "mode": 0o666}, {"name": "suid", "mode": 0o4755, "data": b"s"}]),
    "pax": tar([{"name": "long/" + "n" * 200, "data": b"pax", "pax": {"SCHILY.xattr.user.k": "v", "mtime": "1.5"}}], fmt=tarfile.PAX_FORMAT),
    "replace": tar([{"name": "x", "data": b"1"}, {"name": "x/", "type": D}, {"name": "x", "type": S, "link": ".."}, {"name": "x/y", "data": b"2"}]),
}
for name, t in tars.items():
    put("apply_tar", name + "_layer", b"\0" + t)
    put("apply_tar", name + "_cp", b"\1" + t)
for name in ("plain", "pax", "whiteouts", "device"):
    put("tarsplit", name, b"\0" + tars[name])


def rec(*segs):
    b = b""
    for s in segs:
        if s[0] == "R":
            b += b"R" + struct.pack("<Q", len(s[1])) + s[1]
        else:
            b += b"F" + struct.pack("<Q", s[2]) + struct.pack("<Q", len(s[1])) + s[1].encode()
    return b
put("tarsplit", "record", b"\1" + rec(("R", b"header" * 10), ("F", "file", 16), ("R", b"pad"), ("F", "dir/inner", 6)))
put("tarsplit", "record_up", b"\1" + rec(("F", "up", 30), ("F", "../outside", 30), ("F", "/abs", 30), ("F", "dotdot/outside", 30)))

# dockerfile
for i, s in enumerate([
    "FROM busybox\nRUN echo hi\nCMD [\"sh\"]\n",
    "# escape=`\nARG V=1\nFROM busybox:${V} AS b\nENV A=1 B=\"two words\"\nWORKDIR /$A\nCOPY --chown=1:1 a b /dst/\nEXPOSE 80/tcp ${A}\n",
    "FROM scratch\nADD x.tar /\nLABEL a=b \\\n  c=d\nHEALTHCHECK --interval=5s CMD true\nONBUILD RUN x\nUSER ${U:-root}\nVOLUME [\"/v\"]\nSTOPSIGNAL SIGTERM\nSHELL [\"sh\",\"-c\"]\nENTRYPOINT x\n",
    "FROM a\nFROM b AS c\nCOPY --from=c /x /y\nMAINTAINER me\nENV old style\n",
]):
    put("dockerfile", f"seed{i}", s)

# shell: escape selector + word
for i, s in enumerate([
    b"\0$A ${B:-x} '${A}' \"$B\"", b"\1`$A `\"q\"", b"\0${A#al}${A%a}${A##*l}", b"\0${A/l/L}${B//e/E}",
    b"\0${X:?missing}", b"\0${A:+set}${EMPTY-unset}${EMPTY:-empty}", b"\0\\$A plain",
]):
    put("shell", f"seed{i}", s)

# dockerignore: file \0 paths
for i, s in enumerate([
    "*.go\n!keep.go\nbuild/\n\0a.go\0keep.go\0build/x\0src/b.go",
    "**/node_modules\n# c\n/abs\n\0a/node_modules/b\0abs\0x/abs",
    "[a-c]?\n!b*\n\\*\n\0ax\0bx\0*",
    "dir\n!dir/keep\n\0dir/keep\0dir/other",
]):
    put("dockerignore", f"seed{i}", s)

# jsonfile: options byte, rotated \0 current
l1 = '{"log":"hello\\n","stream":"stdout","time":"2023-11-14T22:13:20.123456789Z"}\n'
l2 = '{"log":"err\\n","stream":"stderr","time":"2023-11-14T23:13:20Z"}\n'
l3 = '{"log":"part","stream":"stdout","time":"2023-11-15T00:13:20.5Z"}\n{"stream":"stdout","time":"2023-11-15T01:13:20Z"}\n'
put("jsonfile", "plain", b"\0" + (l1 + l2 + l3).encode())
put("jsonfile", "rotated", b"\4" + (l1 + l2).encode() + b"\0" + l3.encode())
put("jsonfile", "since_until", bytes([8 | 16 | 0x40]) + (l1 + l2 + l3).encode())
put("jsonfile", "stderr_only", b"\1" + (l1 + l2).encode() + b'{"log":"half')

# proto: selector + JSON, or frames
for i, (w, s) in enumerate([
    (0, '{"op":"start"}'), (0, '{"op":"attach","stdin":true,"stdout":true,"stderr":false}'),
    (0, '{"op":"kill_exec","exec_id":"e","signal":9}'), (0, '{"op":"resize","height":24,"width":80,"exec":"e"}'),
    (0, '{"op":"exec","exec_id":"e","process":{"args":["sh"]},"tty":false,"stdin":true,"attach":true,"console_size":[24,80]}'),
    (1, '{"ok":true,"state":{"supervisor_pid":1,"pid":2,"start_time":3,"started":true,"paused":false,"exit":{"exit_code":1,"oom_killed":false,"finished_at":"x"}}}'),
    (2, '{"event":"exited","exit_code":137,"oom_killed":true,"finished_at":"2024-01-01T00:00:00Z"}'),
    (2, '{"event":"exec_exited","exec_id":"e","exit_code":0}'), (3, '{"ok":false,"error":"no such file","exit_code":127}'),
    (4, '{"id":"c","lc_root":"/run/x","log_path":"/l","log":{"driver":"json-file","max_size":10,"max_file":2,"compress":true},"tty":false,"open_stdin":false,"stdin_once":false,"console_size":null,"cgroup_path":"/sys"}'),
]):
    put("proto", f"seed{i}", bytes([w]) + s.encode())
def frame(k, p):
    return bytes([k, 0, 0, 0]) + struct.pack(">I", len(p)) + p
put("proto", "frames", b"\6" + frame(0, b"in") + frame(3, b"") + frame(16, b'{"event":"oom"}') + frame(1, b"partial")[:10])

# stdcopy: first byte = (piece size << 1) | raw
put("stdcopy", "mux", bytes([3 << 1]) + frame(1, b"out\n") + frame(2, b"err\n") + frame(0, b"in") + frame(1, b"x")[:5])
put("stdcopy", "raw", bytes([(5 << 1) | 1]) + frame(1, b"hello") + frame(16, b"ev") + frame(2, b""))
