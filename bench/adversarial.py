#!/usr/bin/env python3
"""Adversarial cost of one request: memory and Kratos calls a client can make the gateway spend
by having Kratos echo its input (CONTRACT.md section 14: every flow answer carries the submitted
`transient_payload` back unchanged, even for an unknown address).

Starts a small upstream that answers like Kratos (recovery "code sent" flow with the payload
echoed; whoami 401; admin lookups 404) on loopback, starts the gateway binary(ies) given in
front of it, and measures, per gateway:

  - peak RSS above idle while 8 clients each submit a 1 MB recovery body whose
    `transient_payload` is ~340,000 empty objects (echoed back: a 1 MB answer to inspect);
  - Kratos calls (whoami + admin API) made for one request whose echoed payload holds
    5,000 distinct `session_token` objects, 5,000 copies of one token, or 2,000 session-shaped
    objects with random ids.

Usage: bench/adversarial.py --gateway target/release/kratos-gate [--gateway OTHER ...]
Prints a Markdown table; exits 1 if a target is missed by the first gateway
(peak RSS above idle < 64 MB, at most 2 Kratos calls per request). Loopback only, bounded.
"""

import argparse
import http.client
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

FLOW = "2f5b5ed1-0a4c-4a57-9c4d-5b8a0e2f6c11"
CALLS = {"whoami": 0, "admin": 0}
LOCK = threading.Lock()


def count(kind):
    with LOCK:
        CALLS[kind] += 1


class Public(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def reply(self, status, body, ctype="application/json; charset=utf-8"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/sessions/whoami"):
            count("whoami")
            return self.reply(401, b'{"error":{"code":401,"status":"Unauthorized","reason":"No valid session credentials found in the request.","message":"The request could not be authorized"}}\n', "application/json")
        if self.path.startswith("/health"):
            return self.reply(200, b'{"status":"ok"}\n')
        self.reply(404, b"404 page not found\n", "text/plain; charset=utf-8")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        if not self.path.startswith("/self-service/recovery"):
            return self.reply(404, b"404 page not found\n", "text/plain; charset=utf-8")
        # Kratos copies the submitted transient_payload (a json.RawMessage) verbatim.
        payload_start = raw.find(b'"transient_payload":')
        payload = b"null"
        if payload_start >= 0:
            payload = raw[payload_start + len(b'"transient_payload":'):].rstrip()
            if payload.endswith(b"}"):
                payload = payload[:-1]
        body = (
            b'{"id":"' + FLOW.encode() + b'","type":"api","expires_at":"2026-12-04T13:00:00Z",'
            b'"issued_at":"2026-12-04T12:00:00Z","request_url":"http://127.0.0.1/self-service/recovery/api",'
            b'"active":"code","ui":{"action":"http://127.0.0.1/self-service/recovery?flow=' + FLOW.encode()
            + b'","method":"POST","nodes":[{"type":"input","group":"code","attributes":{"name":"email","type":"email","value":"x@unknown.example"}}],'
            b'"messages":[{"id":1060003,"text":"An email containing a recovery code has been sent to the email address you provided.","type":"info"}]},'
            b'"state":"sent_email","transient_payload":' + payload + b"}\n"
        )
        self.reply(200, body)


class Admin(Public):
    def do_GET(self):
        count("admin")
        self.reply(404, b'{"error":{"code":404,"status":"Not Found","message":"Unable to locate the resource"}}\n', "application/json")

    do_DELETE = do_GET


def serve(handler):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def post(port, body, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("POST", f"/self-service/recovery?flow={FLOW}", body=body,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def submission(payload_json: bytes) -> bytes:
    return b'{"method":"code","email":"x@unknown.example","transient_payload":' + payload_json + b"}"


def empty_objects(total_bytes):
    n = (total_bytes - 64) // 3
    return b"[" + b",".join([b"{}"] * n) + b"]"


def measure(binary, public, admin):
    tmp = tempfile.mkdtemp(prefix="kg-adv-")
    port, ops = free_port(), free_port()
    with open(os.path.join(tmp, "blocklist.yaml"), "w") as f:
        f.write(f"identities:\n  - {uuid.uuid4()}\nemail_domains:\n  - evil.example\n")
    with open(os.path.join(tmp, "gateway.yaml"), "w") as f:
        f.write(
            f"listen:\n  public: 127.0.0.1:{port}\n  ops: 127.0.0.1:{ops}\n"
            f"upstream:\n  public: http://127.0.0.1:{public}\n  admin: http://127.0.0.1:{admin}\n"
            "blocklist:\n  path: blocklist.yaml\n"
            # Large enough that a 1 MB echo is read and parsed rather than refused unread.
            "inspection:\n  body_limit_bytes: 4194304\n"
        )
    proc = subprocess.Popen([binary, "--config", os.path.join(tmp, "gateway.yaml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", ops, timeout=1)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise SystemExit(f"{binary}: not ready")
        big = submission(empty_objects(1024 * 1024))
        post(port, submission(b"{}"))  # warm up
        idle = rss_kb(proc.pid, "VmRSS")
        with open(f"/proc/{proc.pid}/clear_refs", "w") as f:
            f.write("5")
        statuses = []
        threads = [threading.Thread(target=lambda: statuses.append(post(port, big)[0])) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        peak = rss_kb(proc.pid, "VmHWM")
        results = {"idle_mb": idle / 1024, "peak_above_idle_mb": (peak - idle) / 1024,
                   "memory_statuses": sorted(set(statuses))}
        cases = {
            "5,000 distinct tokens": b"[" + b",".join(
                b'{"session_token":"ory_st_%s"}' % uuid.uuid4().hex.encode() for _ in range(5000)) + b"]",
            "5,000 copies of one token": b"[" + b",".join([b'{"session_token":"x"}'] * 5000) + b"]",
            "2,000 session-shaped objects": b"[" + b",".join(
                json.dumps({"id": str(uuid.uuid4()), "identity": {"id": str(uuid.uuid4())},
                            "authenticated_at": "2026-12-04T12:00:00Z",
                            "authenticator_assurance_level": "aal1"}).encode() for _ in range(2000)) + b"]",
        }
        for name, payload in cases.items():
            with LOCK:
                CALLS["whoami"] = CALLS["admin"] = 0
            started = time.time()
            status, _ = post(port, submission(payload))
            results[name] = (status, CALLS["whoami"] + CALLS["admin"], time.time() - started)
        return results
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", action="append", required=True)
    args = ap.parse_args()
    public, admin = serve(Public), serve(Admin)
    rows = [(g, measure(g, public.server_address[1], admin.server_address[1])) for g in args.gateway]
    print("| gateway | idle RSS | peak RSS above idle, 8 × 1 MB echo | 5,000 distinct tokens | 5,000 copies of one token | 2,000 session-shaped objects |")
    print("|---|---|---|---|---|---|")
    for g, r in rows:
        cells = [f"{r[k][1]} calls ({r[k][0]}, {r[k][2]:.2f} s)" for k in
                 ("5,000 distinct tokens", "5,000 copies of one token", "2,000 session-shaped objects")]
        print(f"| `{g}` | {r['idle_mb']:.1f} MB | {r['peak_above_idle_mb']:.1f} MB (answers {r['memory_statuses']}) | " + " | ".join(cells) + " |")
    first = rows[0][1]
    ok = first["peak_above_idle_mb"] < 64 and all(
        first[k][1] <= 2 for k in ("5,000 distinct tokens", "5,000 copies of one token", "2,000 session-shaped objects"))
    print("adversarial targets:", "PASS" if ok else "FAIL", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
