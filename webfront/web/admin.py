"""The cluster's status page for administrators (accounts named in config `ADMINS`).

The page is rendered on the server and works without JavaScript; `static/admin.js` polls
`/admin/cluster.json` and refreshes the table in place.
"""

from __future__ import annotations

import time

from flask import Blueprint, abort, g, jsonify, redirect, render_template, request, url_for

from webfront.client import Unavailable

from .auth import is_admin
from .cluster_access import get_cluster

bp = Blueprint("admin", __name__, url_prefix="/admin")


def plain(value):
    """The status object with bytes (digests) as hex, ready for JSON and templates."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def cluster_status() -> dict:
    """The coordinator's status, or a stand-in saying it cannot be reached."""
    try:
        status = plain(get_cluster().status())
        status["reachable"] = True
    except Unavailable as exc:
        status = {"reachable": False, "error": getattr(exc, "message", str(exc)),
                  "replicas": [], "alarms": []}
    status.setdefault("replicas", [])
    status.setdefault("alarms", [])
    status["fetched_at"] = int(time.time() * 1_000_000)
    return status


def _require_admin() -> None:
    if g.user is None:
        abort(401, "log in as an administrator first")
    if not is_admin():
        abort(403, "administrators only")


@bp.route("/cluster")
def cluster():
    if g.user is None:
        return redirect(url_for("auth.login", next=request.path))
    _require_admin()
    return render_template("admin_cluster.html", status=cluster_status())


@bp.route("/cluster.json")
def cluster_json():
    _require_admin()
    response = jsonify(cluster_status())
    response.headers["Cache-Control"] = "no-store"
    return response
