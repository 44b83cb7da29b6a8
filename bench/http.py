"""HTTP through the whole stack: wrk (Debian) against gunicorn running the Flask app.

For 1 and 3 replicas (policy majority, fsync batch) one local cluster with its web front end
(the default: 3 sync gunicorn workers) is started, a user with 200 posts is created through the
API, then wrk runs, interleaved per round:
  - GET /public                the public timeline page (HTML)
  - GET /                      the user's home timeline page (HTML, session cookie from a real
                               form login with its CSRF token)
  - GET /api/v1/timeline       the user's home timeline (JSON, bearer token)
  - POST /api/v1/posts         a new 80-character post (JSON, bearer token; wrk Lua script)
Reported: requests/s, latency p50/p99 from wrk's own histogram, non-2xx responses.

    python -m bench http [--quick] [--duration S] [--rounds N] [--out FILE]
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from bench import common
from webfront.cluster import free_port

LUA_REPORT = """
done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"non2xx\\": %d, "
    .. "\\"errors\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, \\"p999_us\\": %d}\\n",
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"""


def _api(base: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(base + path, data=json.dumps(body).encode() if body else None,
                                 headers=headers, method="POST" if body else "GET")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"{}")


def _session_cookie(base: str, username: str, password: str) -> str:
    """Logs in through the HTML form (CSRF token and all) and returns the session cookie."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(base + "/login", timeout=10) as r:
        page = r.read().decode()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    if token is None:
        raise RuntimeError("no csrf_token field on /login")
    form = urllib.parse.urlencode({"csrf_token": token.group(1), "username": username,
                                   "password": password}).encode()
    with opener.open(base + "/login", data=form, timeout=10) as r:
        r.read()
    session = next((c.value for c in jar if c.name == "session"), None)
    if session is None:
        raise RuntimeError("the login form set no session cookie")
    # wrk counts a redirect to /login as a success: make sure the cookie really opens home.
    home = urllib.request.Request(base + "/", headers={"Cookie": f"session={session}"})
    with urllib.request.urlopen(home, timeout=10) as r:
        if urllib.parse.urlparse(r.geturl()).path != "/" or username not in r.read().decode():
            raise RuntimeError("the session cookie does not open the home timeline")
    return session


def wrk(url: str, script: Path, seconds: float, connections: int) -> dict:
    out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
                          "--latency", "-s", str(script), url],
                         capture_output=True, text=True, timeout=seconds + 60, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("JSON "))
    r = json.loads(line[5:])
    r["requests_per_s"] = round(r["requests"] / (r["duration_us"] / 1e6))
    return r


def main(argv: list[str]) -> int:
    p = common.parser("http", __doc__)
    p.add_argument("--connections", type=int, default=16)
    args = p.parse_args(argv)
    common.settle(args)
    if shutil.which("wrk") is None:
        print("wrk not installed: run scripts/bench-deps.sh", file=sys.stderr)
        return 1
    replica_counts = [1] if args.quick else [1, 3]
    rows: dict[tuple, list[dict]] = {}
    progress = common.Progress(args.rounds * len(replica_counts) * 4, "http")
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        for rnd in range(args.rounds):
            for replicas in replica_counts:
                port = free_port()
                with common.our_cluster(replicas, "majority", "batch", web_port=port) as cluster:
                    base = f"http://127.0.0.1:{port}"
                    deadline = time.monotonic() + 30
                    while True:
                        try:
                            _api(base, "/api/v1/health")
                            break
                        except OSError:
                            if time.monotonic() > deadline or "web" not in cluster.procs:
                                raise
                            time.sleep(0.2)
                    _api(base, "/api/v1/users", {"username": "reader1",
                                                 "password": "benchmark-pw"})
                    token = _api(base, "/api/v1/tokens", {"username": "reader1",
                                                          "password": "benchmark-pw"})["token"]
                    for i in range(20 if args.quick else 200):
                        _api(base, "/api/v1/posts", {"text": f"post {i} " + "x" * 70}, token)
                    auth = f'wrk.headers["Authorization"] = "Bearer {token}"\n'
                    cookie = _session_cookie(base, "reader1", "benchmark-pw")
                    scripts = {
                        "GET /public": ("/public", ""),
                        "GET / (home, logged in)": ("/", f'wrk.headers["Cookie"] = "session={cookie}"\n'),
                        "GET /api/v1/timeline": ("/api/v1/timeline", auth),
                        "POST /api/v1/posts": ("/api/v1/posts", auth + (
                            'wrk.method = "POST"\n'
                            'wrk.headers["Content-Type"] = "application/json"\n'
                            f'wrk.body = \'{{"text": "{"y" * 80}"}}\'\n')),
                    }
                    for name, (path, lua) in scripts.items():
                        progress.step(f"round {rnd + 1}: {replicas} replicas, {name}")
                        script = Path(tmp) / "s.lua"
                        script.write_text(lua + LUA_REPORT)
                        r = wrk(base + path, script, args.duration, args.connections)
                        r.update(replicas=replicas, request=name,
                                 connections=args.connections)
                        rows.setdefault((replicas, name), []).append(r)
    progress.finish()
    results = []
    for runs in rows.values():
        runs.sort(key=lambda r: r["requests_per_s"])
        mid = dict(runs[len(runs) // 2])
        mid["runs_requests_per_s"] = [r["requests_per_s"] for r in runs]
        results.append(mid)
    print(common.fmt_table(results, [("replicas", "replicas"), ("request", "request"),
                                     ("requests_per_s", "requests/s"), ("p50_us", "p50 us"),
                                     ("p99_us", "p99 us"), ("non2xx", "non-2xx"),
                                     ("errors", "socket errors")]))
    common.write_results("http", args, {"results": results,
                                        "gunicorn": "3 sync workers (webfront web default)"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
