#!/usr/bin/env python3
"""Propagation of a remote blocklist (blocklist.url) to three gateway replicas.

For each source (an S3-compatible object on moto in server mode; a file served by nginx with
ETags) and each list size, starts three kratos-gate processes polling the same source (the
default 1 s poll), then makes EDITS edits. Each edit appends one new identity to the list and
publishes it (S3: PutObject returned; HTTP: the file renamed into nginx's root); from that
moment the clock runs until whoami of the new identity answers 401 at all three replicas.
Edits start at a random offset within the poll interval (the clock of a real edit does not
know the replicas' poll phase).

The gateways' own audit line (event=blocklist_reloaded, elapsed_ms: from the start of the
fetch to the new list in force) splits each figure into the wait for the next poll and the
fetch + parse + swap.

Usage: bench/propagation.py --gateway target/release/kratos-gate --out DIR
       [--edits 20] [--sizes 10,1000000] [--sources s3,http] [--replicas 3] [--poll 1s,250ms]
       bench/propagation.py report DIR/propagation.json BENCHMARKS.md COMMAND COMMIT
Needs: moto_server and boto3 (pip install 'moto[server]'), nginx.
"""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import http.client
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WHOAMI = os.path.join(ROOT, "tests/fixtures/kratos/synthesized/whoami-200.json")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} not listening on {port} within {timeout} s")


class FakeKratos:
    """whoami answers for the identity named by the session token; admin calls succeed."""

    def __init__(self):
        with open(WHOAMI) as f:
            template = json.load(f)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, body, headers=()):
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.startswith("/sessions/whoami"):
                    ident = self.headers.get("X-Session-Token", "")
                    session = dict(template)
                    session["identity"] = dict(template["identity"], id=ident)
                    self.reply(200, json.dumps(session),
                               [("X-Kratos-Authenticated-Identity-Id", ident)])
                elif self.path.startswith("/admin/identities/"):
                    ident = self.path.split("/")[3].split("?")[0]
                    self.reply(200, json.dumps(dict(template["identity"], id=ident)))
                else:
                    self.reply(404, "{}")

            def do_DELETE(self):
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self):
        return f"http://127.0.0.1:{self.port}"


class Moto:
    def __init__(self, work):
        import boto3  # installed with moto[server]

        self.port = free_port()
        self.log = open(os.path.join(work, "moto.log"), "w")
        self.proc = subprocess.Popen(
            ["moto_server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc, "moto_server")
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                               aws_access_key_id="test", aws_secret_access_key="test")
        self.s3.create_bucket(Bucket="lists")

    def publish(self, data):
        self.s3.put_object(Bucket="lists", Key="kratos/blocklist.yaml", Body=data)

    def url(self):
        return "s3://lists/kratos/blocklist.yaml"

    def env(self):
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
                "AWS_ALLOW_HTTP": "true"}

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Nginx:
    def __init__(self, work):
        self.port = free_port()
        self.root = os.path.join(work, "www")
        run = os.path.join(work, "nginx")
        os.makedirs(self.root, exist_ok=True)
        os.makedirs(run, exist_ok=True)
        conf = os.path.join(run, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""daemon off;
master_process off;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {run}/body; proxy_temp_path {run}/proxy;
  fastcgi_temp_path {run}/fastcgi; uwsgi_temp_path {run}/uwsgi; scgi_temp_path {run}/scgi;
  server {{ listen 127.0.0.1:{self.port}; root {self.root}; etag on; }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-c", conf, "-e", f"{run}/error.log"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc, "nginx")

    def publish(self, data):
        tmp = os.path.join(self.root, ".blocklist.yaml.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, os.path.join(self.root, "blocklist.yaml"))

    def url(self):
        return f"http://127.0.0.1:{self.port}/blocklist.yaml"

    def env(self):
        return {}

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Gateway:
    def __init__(self, binary, work, name, source, kratos, poll):
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir, exist_ok=True)
        self.public, self.ops = free_port(), free_port()
        conf = os.path.join(self.dir, "gateway.yaml")
        with open(conf, "w") as f:
            f.write(f"""listen:
  public: 127.0.0.1:{self.public}
  ops: 127.0.0.1:{self.ops}
upstream:
  public: {kratos}
  admin: {kratos}
blocklist:
  url: {source.url()}
""" + (f"  poll_interval: {poll}\n" if poll else ""))
        env = {k: v for k, v in os.environ.items() if not k.startswith("KRATOS_GATE_")}
        env.update(source.env())
        env["RUST_LOG"] = "info"
        self.log_path = os.path.join(self.dir, "stderr.log")
        self.proc = subprocess.Popen([binary, "--log-format", "json", "--config", conf],
                                     env=env, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log_path, "w"))

    def wait_ready(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"gateway exited with {self.proc.returncode}:\n" + open(self.log_path).read())
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.ops, timeout=1)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        sys.exit("gateway not ready:\n" + open(self.log_path).read())

    def log_values(self, match, key):
        """`key` of every log line matching `match` (a field, value pair), in order."""
        out = []
        with open(self.log_path) as f:
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                fields = e.get("fields", e)
                if fields.get(match[0]) == match[1] and key in fields:
                    out.append(float(fields[key]))
        return out

    def reload_elapsed_ms(self):
        """elapsed_ms of every blocklist_reloaded audit line: fetch, parse, swap."""
        return self.log_values(("event", "blocklist_reloaded"), "elapsed_ms")

    def fetch_ms(self):
        """fetch_ms of every download of the list."""
        return self.log_values(("message", "blocklist downloaded"), "fetch_ms")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def until_401(port, token, deadline, out, i):
    conn = None
    while time.time() < deadline:
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/sessions/whoami", headers={"X-Session-Token": token})
            r = conn.getresponse()
            r.read()
            if r.status == 401:
                out[i] = time.time()
                return
        except (OSError, http.client.HTTPException):
            conn = None
        time.sleep(0.005)


def base_list(n):
    rng = random.Random(n)
    lines = ["identities:\n"]
    for _ in range(n):
        lines.append(f"  - {uuid.UUID(int=rng.getrandbits(128), version=4)}\n")
    return "".join(lines).encode()


def run(binary, work, source_kind, size, edits, replicas, kratos, poll):
    src_dir = os.path.join(work, f"{source_kind}-{size}")
    os.makedirs(src_dir, exist_ok=True)
    source = Moto(src_dir) if source_kind == "s3" else Nginx(src_dir)
    data = base_list(size - 1)  # plus one new id per edit: `size` ids at the first edit
    source.publish(data)
    gws = [Gateway(binary, src_dir, f"gw{i}", source, kratos, poll) for i in range(replicas)]
    for g in gws:
        g.wait_ready()
    before = [len(g.reload_elapsed_ms()) for g in gws]
    fetches_before = [len(g.fetch_ms()) for g in gws]
    results = []
    try:
        for k in range(edits):
            time.sleep(random.uniform(0, 1.0) + 0.2)
            token = str(uuid.uuid4())
            data += f"  - {token}\n".encode()
            t_write = time.time()
            source.publish(data)
            t0 = time.time()
            done = [None] * replicas
            threads = [threading.Thread(target=until_401, args=(g.public, token, t0 + 60, done, i))
                       for i, g in enumerate(gws)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if any(d is None for d in done):
                sys.exit(f"edit {k}: not enforced by every replica within 60 s")
            per = [round((d - t0) * 1000, 1) for d in done]
            results.append({"edit": k, "publish_ms": round((t0 - t_write) * 1000, 1),
                            "replicas_ms": per, "all_ms": max(per)})
            print(f"  {source_kind} {size} ids edit {k + 1}/{edits}: publish {results[-1]['publish_ms']} ms, "
                  f"enforced by all {replicas} after {max(per)} ms {per}", flush=True)
    finally:
        time.sleep(0.5)
        elapsed = [g.reload_elapsed_ms()[b:] for g, b in zip(gws, before)]
        fetched = [g.fetch_ms()[b:] for g, b in zip(gws, fetches_before)]
        for g in gws:
            g.stop()
        source.stop()
    all_ms = sorted(r["all_ms"] for r in results)
    reload_ms = sorted(x for e in elapsed for x in e)
    fetch_ms = sorted(x for e in fetched for x in e)
    return {
        "source": source_kind, "ids": size, "edits": edits, "replicas": replicas,
        "poll_interval": poll or "1s",
        "p50_ms": percentile(all_ms, 50), "p99_ms": percentile(all_ms, 99),
        "max_ms": all_ms[-1], "min_ms": all_ms[0],
        "reload_p50_ms": percentile(reload_ms, 50) if reload_ms else None,
        "reload_p99_ms": percentile(reload_ms, 99) if reload_ms else None,
        "fetch_p50_ms": percentile(fetch_ms, 50) if fetch_ms else None,
        "fetch_p99_ms": percentile(fetch_ms, 99) if fetch_ms else None,
        "publish_p50_ms": percentile(sorted(r["publish_ms"] for r in results), 50),
        "list_bytes": len(data),
        "edits_detail": results,
    }


def percentile(sorted_values, p):
    """Nearest rank: with 20 samples, p99 is the largest."""
    k = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(k) - 1]


def size_text(n):
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def report(json_path, md_path, command, commit):
    """Writes the figures into BENCHMARKS.md between the propagation markers."""
    import platform

    data = json.load(open(json_path))
    names = {"s3": "S3-compatible (moto)", "http": "HTTP (nginx, ETag)"}
    lines = [
        "<!-- propagation:start -->",
        f"Command: `{command}` at `{commit}`, {data['cpus']} CPUs, {platform.system()}. "
        f"{data['runs'][0]['replicas']} gateway processes poll one source (`blocklist.url`; "
        "`poll_interval` as in the table, 1 s being the default); each edit appends one "
        "identity and publishes the list; the figure is from the publish (PutObject returned / "
        "file renamed into nginx's root) until whoami of that identity answers 401 at every "
        "replica. Edits start at a random point of the poll interval. p99 is nearest-rank: over "
        "20 edits, the slowest one. *reload* is the gateway's own `elapsed_ms` (fetch + parse + "
        "swap, every replica's reloads), *fetch* its download alone (`fetch_ms` of the "
        "`blocklist downloaded` line); the rest of a figure is the wait for the next poll.",
        "",
        "| source | ids | list size | poll | edits | p50 | p99 | max | reload p50 / p99 | fetch p50 / p99 | 2 s p99 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in data["runs"]:
        ok = "met" if r["p99_ms"] <= 2000 else "**not met**"
        lines.append(
            f"| {names.get(r['source'], r['source'])} | {r['ids']:,} | {size_text(r['list_bytes'])} | "
            f"{r['poll_interval']} | {r['edits']} | {r['p50_ms']:.0f} ms | {r['p99_ms']:.0f} ms | "
            f"{r['max_ms']:.0f} ms | {r['reload_p50_ms']:.0f} / {r['reload_p99_ms']:.0f} ms | "
            f"{r['fetch_p50_ms']:.0f} / {r['fetch_p99_ms']:.0f} ms | {ok} |")
    lines.append("<!-- propagation:end -->")
    block = "\n".join(lines)
    text = open(md_path).read()
    start, end = "<!-- propagation:start -->", "<!-- propagation:end -->"
    if start in text and end in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n## Propagation\n\n" + block + "\n"
    open(md_path, "w").write(text)
    print(block)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "report":
        report(*sys.argv[2:6])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--edits", type=int, default=20)
    ap.add_argument("--sizes", default="10,1000000")
    ap.add_argument("--sources", default="s3,http")
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--poll", default="",
                    help="blocklist.poll_interval values, comma-separated (default: the gateway's, 1s)")
    args = ap.parse_args()
    for tool in ("moto_server", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found (pip install 'moto[server]'; apt-get install nginx)")
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="kratos-gate-propagation.")
    kratos = FakeKratos()
    runs = []
    ok = False
    try:
        for poll in args.poll.split(","):
            for size in [int(s) for s in args.sizes.split(",")]:
                for kind in args.sources.split(","):
                    print(f"== {kind}, {size} ids, {args.replicas} replicas, {args.edits} edits, "
                          f"poll {poll or '1s (default)'}", flush=True)
                    runs.append(run(args.gateway, work, kind, size, args.edits, args.replicas,
                                    kratos.url(), poll))
        ok = True
    finally:
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept for inspection: {work}", file=sys.stderr)
    with open(os.path.join(args.out, "propagation.json"), "w") as f:
        json.dump({"runs": runs, "cpus": os.cpu_count()}, f, indent=1)
    for r in runs:
        print(f"{r['source']:>4} {r['ids']:>8} ids, poll {r['poll_interval']}: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms "
              f"(reload p50 {r['reload_p50_ms']} ms, p99 {r['reload_p99_ms']} ms; "
              f"of which fetch p50 {r['fetch_p50_ms']} ms, p99 {r['fetch_p99_ms']} ms)")


if __name__ == "__main__":
    main()
