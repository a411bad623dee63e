#!/usr/bin/python3
"""Record the bytes Xen's own xenstore clients send (golden vectors for xsio-xs-wire).

Runs each command of SCENARIOS with XENSTORED_PATH pointing at a Unix socket served by this
script. The script answers like a minimal xenstored over a small fixed tree (just enough for
the client to proceed: values, child lists, permissions, transactions, watch events) and
writes one file per scenario: '>' lines are frames the client sent, '<' lines frames we sent
back, each as hex "header payload". This file is independent of our Rust code on purpose.

Usage: /usr/bin/python3 testdata/xenstore/record.py [OUTDIR]
"""

import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading

SCENARIOS = [
    ("write-single", ["xenstore-write", "/a", "b"]),
    ("write-multi", ["xenstore-write", "/x/y", "1", "/x/z", "2"]),
    ("write-empty-value", ["xenstore-write", "/local/domain/1/name", ""]),
    ("read-single", ["xenstore-read", "/a"]),
    ("read-multi", ["xenstore-read", "/x/y", "/x/z"]),
    ("read-enoent", ["xenstore-read", "/nope"]),
    ("read-relative", ["xenstore-read", "name"]),
    ("exists", ["xenstore-exists", "/a"]),
    ("rm", ["xenstore-rm", "/a"]),
    ("list", ["xenstore-list", "/x"]),
    ("ls", ["xenstore-ls", "/x"]),
    ("ls-perms", ["xenstore-ls", "-p", "/x"]),
    ("chmod", ["xenstore-chmod", "/x/y", "n0", "r5"]),
    ("watch", ["xenstore-watch", "-n", "2", "/x"]),
    # pyxs (python3-pyxs), a second, independent client: counting req_ids, a transaction,
    # permissions and the domain path.
    ("pyxs-session", ["/usr/bin/python3", "testdata/xenstore/pyxs-session.py"]),
]

TREE = {
    "/": b"",
    "/a": b"b",
    "/x": b"",
    "/x/y": b"1",
    "/x/z": b"2",
    "/local": b"",
    "/local/domain": b"",
    "/local/domain/0": b"",
    "/local/domain/0/name": b"Domain-0",
}

ERROR, WATCH_EVENT = 16, 15

# Commands run from the repository root (the pyxs script's path is relative to it).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def frame(msg_type, req_id, tx_id, payload):
    return struct.pack("<IIII", msg_type, req_id, tx_id, len(payload)) + payload


def children(tree, path):
    prefix = path.rstrip("/") + "/"
    names = []
    for key in tree:
        if key != path and key.startswith(prefix) and "/" not in key[len(prefix):]:
            names.append(key[len(prefix):])
    return names


def answer(tree, msg_type, req_id, tx_id, payload):
    """The frames to send back for one request."""
    fields = payload.split(b"\0")
    path = fields[0].decode(errors="replace")
    if path and not path.startswith("/") and not path.startswith("@"):
        path = "/local/domain/0/" + path

    def reply(body):
        return [frame(msg_type, req_id, tx_id, body)]

    def error(name):
        return [frame(ERROR, req_id, tx_id, name + b"\0")]

    if msg_type == 6:  # TRANSACTION_START
        return reply(b"1\0")
    if msg_type == 7:  # TRANSACTION_END
        return reply(b"OK\0")
    if msg_type == 2:  # READ
        return reply(tree[path]) if path in tree else error(b"ENOENT")
    if msg_type == 1:  # DIRECTORY
        if path not in tree:
            return error(b"ENOENT")
        return reply(b"".join(n.encode() + b"\0" for n in children(tree, path)))
    if msg_type == 3:  # GET_PERMS
        return reply(b"n0\0r5\0") if path in tree else error(b"ENOENT")
    if msg_type == 11:  # WRITE
        value = payload[len(fields[0]) + 1:]
        tree[path] = value
        return reply(b"OK\0")
    if msg_type in (12, 13, 14):  # MKDIR, RM, SET_PERMS
        if msg_type == 12:
            tree.setdefault(path, b"")
        if msg_type == 13:
            for key in [k for k in tree if k == path or k.startswith(path + "/")]:
                del tree[key]
        return reply(b"OK\0")
    if msg_type == 4:  # WATCH: ack, the initial fire, then one change below the path
        token = fields[1]
        return reply(b"OK\0") + [
            frame(WATCH_EVENT, 0, 0, fields[0] + b"\0" + token + b"\0"),
            frame(WATCH_EVENT, 0, 0, fields[0] + b"/y\0" + token + b"\0"),
        ]
    if msg_type == 5:  # UNWATCH
        return reply(b"OK\0")
    if msg_type == 10:  # GET_DOMAIN_PATH
        return reply(b"/local/domain/" + fields[0] + b"\0")
    return error(b"ENOSYS")


def serve(conn, log):
    tree = dict(TREE)
    buf = b""
    while True:
        data = conn.recv(65536)
        if not data:
            return
        buf += data
        while len(buf) >= 16:
            msg_type, req_id, tx_id, length = struct.unpack("<IIII", buf[:16])
            if len(buf) < 16 + length:
                break
            payload = buf[16:16 + length]
            buf = buf[16 + length:]
            log.append((">", frame(msg_type, req_id, tx_id, payload)))
            for out in answer(tree, msg_type, req_id, tx_id, payload):
                log.append(("<", out))
                conn.sendall(out)


def hexline(direction, data):
    return f"{direction} {data[:16].hex()} {data[16:].hex()}".rstrip()


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    def version(package):
        return subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
            capture_output=True, text=True,
        ).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        sock_path = os.path.join(tmp, "socket")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(sock_path)
        server.listen(4)
        for name, argv in SCENARIOS:
            log = []
            proc = subprocess.Popen(
                argv, cwd=ROOT, env={**os.environ, "XENSTORED_PATH": sock_path},
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
            conn, _ = server.accept()
            thread = threading.Thread(target=serve, args=(conn, log), daemon=True)
            thread.start()
            out, err = proc.communicate(timeout=20)
            thread.join(timeout=5)
            conn.close()
            with open(os.path.join(outdir, name + ".txt"), "w") as f:
                f.write(f"# {' '.join(repr(a) if a == '' else a for a in argv)}\n")
                package = "python3-pyxs" if name.startswith("pyxs") else "xenstore-utils"
                f.write(f"# recorded by record.py from Debian {package} {version(package)}\n")
                f.write(f"# exit status {proc.returncode}; stdout {out!r}; stderr {err!r}\n")
                f.write("# '>' client to daemon, '<' daemon to client; hex header then payload\n")
                for direction, data in log:
                    f.write(hexline(direction, data) + "\n")
            print(f"{name}: {len(log)} frames, exit {proc.returncode}, stdout {out!r}")


if __name__ == "__main__":
    main()
