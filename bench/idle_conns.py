#!/usr/bin/env python3
"""Open N keep-alive connections to 127.0.0.1:PORT, send one `GET / HTTP/1.1` on each and read the
response, then hold them all idle for HOLD seconds while sampling the RSS of PID.

Prints one line of JSON: baseline and with-connections VmRSS/VmHWM (kB), how many connections
were opened and how many the server still had open at the end of the hold.
Used by bench/idle-rss.sh. Loopback only.
"""

import argparse
import json
import resource
import select
import socket
import sys
import time


def proc_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def read_response(s):
    """Read one HTTP/1.1 response (Content-Length or chunked); return the status code."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the response headers")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    if b"content-length" in headers:
        need = int(headers[b"content-length"])
        while len(body) < need:
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError("closed in the body")
            body += chunk
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while not body.endswith(b"0\r\n\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError("closed in the chunked body")
            body += chunk
    return status


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True, help="process whose RSS to sample")
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--hold", type=float, default=5.0)
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.conns + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want, hard))

    base_rss = proc_kb(a.pid, "VmRSS")
    base_anon = proc_kb(a.pid, "RssAnon")
    socks, failed, statuses = [], 0, {}
    t0 = time.monotonic()
    req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: idle-rss\r\n\r\n"
    for _ in range(a.conns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", a.port))
            s.sendall(req)
            st = read_response(s)
            statuses[st] = statuses.get(st, 0) + 1
            socks.append(s)
        except OSError as e:
            failed += 1
            s.close()
            print(f"connection failed: {e}", file=sys.stderr)
    setup_s = time.monotonic() - t0

    # Hold idle; sample RSS once a second, keep the largest sample.
    samples = []
    anon_samples = []
    end = time.monotonic() + a.hold
    while True:
        samples.append(proc_kb(a.pid, "VmRSS"))
        anon_samples.append(proc_kb(a.pid, "RssAnon"))
        left = end - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(1.0, left))

    # Which connections did the server close during the hold? (readable with EOF = closed)
    still_open = 0
    for s in socks:
        r, _, _ = select.select([s], [], [], 0)
        if not r:
            still_open += 1
        else:
            try:
                still_open += 1 if s.recv(1, socket.MSG_PEEK) else 0
            except OSError:
                pass
    for s in socks:
        s.close()

    print(json.dumps({
        "port": a.port, "pid": a.pid, "conns_requested": a.conns, "conns_ok": len(socks),
        "conns_failed": failed, "statuses": statuses, "setup_s": round(setup_s, 3),
        "hold_s": a.hold, "rss_base_kb": base_rss, "rss_idle_kb": max(samples),
        "rss_idle_last_kb": samples[-1], "hwm_kb": proc_kb(a.pid, "VmHWM"),
        "anon_base_kb": base_anon, "anon_idle_kb": max(anon_samples),
        "still_open_after_hold": still_open,
    }))


if __name__ == "__main__":
    main()
