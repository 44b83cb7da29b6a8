"""`webfront web`: run the Flask app under gunicorn, in-process (gunicorn's BaseApplication).

    webfront web --bind 127.0.0.1:8000 --coordinator HOST:PORT [--secret-file F]
                 [--workers N] [--admins a,b] [--session-key-file F] [--data-dir D]

The session key (which signs cookies and API tokens, and must be the same in every worker)
comes from `--session-key-file` or `WEBFRONT_SECRET_KEY`, never from the code. Without either,
a fresh key is generated into `<data-dir>/session.key` (or a temporary file) and the path is
logged; sessions then survive restarts only if the same data dir is used.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("webfront.web")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="webfront web", description=__doc__.split("\n\n")[0])
    p.add_argument("--bind", default="127.0.0.1:8000", help="HOST:PORT to listen on")
    p.add_argument("--coordinator", default=os.environ.get("WEBFRONT_COORDINATOR",
                                                          "127.0.0.1:7000"),
                   help="the coordinator's client address HOST:PORT")
    p.add_argument("--secret-file", default=os.environ.get("WEBFRONT_SECRET_FILE"),
                   help="file with the cluster's shared secret (none: insecure dev mode)")
    p.add_argument("--workers", type=int, default=int(os.environ.get("WEBFRONT_WORKERS", "3")))
    p.add_argument("--threads", type=int, default=1, help="threads per worker")
    p.add_argument("--admins", default=os.environ.get("WEBFRONT_ADMINS", ""),
                   help="comma-separated usernames allowed on /admin/cluster")
    p.add_argument("--session-key-file", default=os.environ.get("WEBFRONT_SESSION_KEY_FILE"),
                   help="file with the session key (else WEBFRONT_SECRET_KEY, else generated)")
    p.add_argument("--data-dir", default=None,
                   help="where a generated session key and the login rate-limit counters are kept")
    p.add_argument("--timeout", type=float, default=3.0, help="cluster request timeout, s")
    p.add_argument("--log-level", default="info")
    return p.parse_args(argv)


def session_key(args: argparse.Namespace) -> str:
    if args.session_key_file:
        key = Path(args.session_key_file).read_text().strip()
        if not key:
            raise SystemExit(f"webfront web: {args.session_key_file} is empty")
        return key
    if os.environ.get("WEBFRONT_SECRET_KEY"):
        return os.environ["WEBFRONT_SECRET_KEY"]
    if args.data_dir:
        path = Path(args.data_dir) / "session.key"
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        fd, name = tempfile.mkstemp(prefix="webfront-session-", suffix=".key")
        os.close(fd)
        path = Path(name)
    if not path.exists() or not path.read_text().strip():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
        log.warning("no session key given: generated one into %s", path)
    else:
        log.info("using the session key in %s", path)
    return path.read_text().strip()


def limits_uri(args: argparse.Namespace) -> str:
    """Login attempts are counted in one file for all workers (else each would allow the limit)."""
    directory = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="webfront-limits-"))
    directory.mkdir(parents=True, exist_ok=True)
    return "sqlite://" + str((directory / "login-limits.sqlite").resolve())


def app_config(args: argparse.Namespace) -> dict:
    return {
        "RATELIMIT_STORAGE_URI": limits_uri(args),
        "SECRET_KEY": session_key(args),
        "COORDINATOR": args.coordinator,
        "CLUSTER_SECRET_FILE": args.secret_file,
        "CLUSTER_TIMEOUT": args.timeout,
        "ADMINS": [a.strip() for a in args.admins.split(",") if a.strip()],
    }


def main(argv: list[str] | None = None) -> int:
    from gunicorn.app.base import BaseApplication

    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = app_config(args)
    if args.secret_file and not Path(args.secret_file).is_file():
        raise SystemExit(f"webfront web: no such secret file: {args.secret_file}")
    from . import metrics

    metrics.enable_multiprocess(os.environ.get("PROMETHEUS_MULTIPROC_DIR")
                                or tempfile.mkdtemp(prefix="webfront-metrics-"))

    class WebApplication(BaseApplication):
        def load_config(self) -> None:
            options = {
                "bind": args.bind,
                "workers": max(1, args.workers),
                "threads": max(1, args.threads),
                "worker_class": "gthread" if args.threads > 1 else "sync",
                "timeout": 30,
                "graceful_timeout": 5,
                "loglevel": args.log_level,
                "accesslog": "-",
                "proc_name": "webfront-web",
                "child_exit": _child_exit,
                # One fixed path per user (~/.gunicorn/gunicorn.ctl) by default: a second web
                # front end would take it over, and stopping either would delete it.
                "control_socket_disable": True,
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            from webfront.web import create_app

            return create_app(config)

    log.info("webfront web on http://%s (coordinator %s, %d workers)", args.bind,
             args.coordinator, args.workers)
    WebApplication().run()
    return 0


def _child_exit(server, worker) -> None:
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
    except OSError as exc:  # metrics must never take the server down
        log.warning("could not clean metrics of worker %s: %s", worker.pid, exc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
