"""JSON API under /api/v1, described by the OpenAPI 3 document at /api/v1/openapi.json.

Clients authenticate with a bearer token from `POST /api/v1/tokens`: a signed, expiring
token (itsdangerous, keyed by the app's secret) naming the user. Reads are linearizable
(the API keeps no session); every write's response carries its `seq`.
Errors are `{"error": {"code", "message"}}`.

Writes (POST and DELETE) take an optional `Idempotency-Key` header: the same key from the same
user on the same operation with the same arguments is the same request, applied once, and a
retry gets the first result (request_ids.py). The arguments are part of the request id, so a
key sent again with another body or path is another request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from webfront.client import Conflict

from . import auth, cluster_access
from .admin import cluster_status
from .errors import error_response
from .forms import username_problem
from .inputs import (
    INT64_MAX,
    InvalidInput,
    display_name,
    json_object,
    post_text,
    query_int,
)
from .limits import login_limits
from .openapi import openapi_document
from .request_ids import KEY_RULE, request_id, secret_digest, valid_key
from .timefmt import iso

bp = Blueprint("api", __name__, url_prefix="/api/v1")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError):
    return error_response(exc.status, exc.code, exc.message)


# ----------------------------------------------------------------------------- helpers


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt="webfront-api-token")


def issue_token(user: dict) -> str:
    """A token for this account: its name, and its created_at, which tells it apart from an
    account that takes the name after this one is deleted (`actor_since`, docs/protocol.md)."""
    return _serializer().dumps({"u": user["username"], "c": user["created_at"]})


def token_user() -> str:
    """The username the request's bearer token names; 401 without a valid one."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>")
    try:
        data = _serializer().loads(token.strip(),
                                   max_age=current_app.config["API_TOKEN_MAX_AGE"])
    except SignatureExpired:
        raise ApiError(401, "token_expired", "the token has expired; get a new one") from None
    except BadSignature:
        raise ApiError(401, "unauthorized", "invalid token") from None
    if not isinstance(data, dict) or not isinstance(data.get("u"), str) \
            or type(data.get("c")) is not int:  # a token from before accounts were told apart
        raise ApiError(401, "unauthorized", "invalid token; get a new one")
    g.api_user, g.user_since = data["u"], data["c"]
    return data["u"]


def json_body(required: dict[str, type], optional: dict[str, type] | None = None) -> dict:
    """The request's JSON object with the named fields of the named types, or 400."""
    body = json_object()
    for name, kind in required.items():
        if name not in body:
            raise ApiError(400, "invalid", f"missing field {name!r}")
    for name, kind in {**required, **(optional or {})}.items():
        if name in body and (not isinstance(body[name], kind) or isinstance(body[name], bool)
                             and kind is not bool):
            raise ApiError(400, "invalid", f"field {name!r} must be a {kind.__name__}")
    return body


def checked(field: str, rule: Callable[[str], Any], value: str) -> Any:
    """`rule(value)` (a rule of inputs.py), its InvalidInput as a 400 naming `field`."""
    try:
        return rule(value)
    except InvalidInput as exc:
        raise ApiError(400, "invalid", f"{field}: {exc}") from None


def page_args() -> dict:
    args: dict[str, Any] = {}
    before = query_int("before", 0, INT64_MAX)
    limit = query_int("limit", 1, 200)
    if before is not None:
        args["before"] = before
    if limit is not None:
        args["limit"] = limit
    return args


def idempotent_request_id(actor: str, op: str, *arguments: str) -> str | None:
    """The request id named by the request's Idempotency-Key header for `actor`, `op` and the
    operation's `arguments`, or None (a fresh id) without one; 400 if the key is malformed.
    With the arguments in the id, a key reused with another body or path is a new request
    rather than a replay of the first answer for a write that was never applied."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]  # the IETF draft sends it as a quoted structured-field string
    if not valid_key(key):
        raise ApiError(400, "invalid", f"Idempotency-Key: {KEY_RULE}")
    return request_id("api", actor, op, key, *arguments)


def post_json(post: dict) -> dict:
    return {"id": post["id"], "author": post["author"], "text": post["text"],
            "created_at": iso(post["created_at"]), "seq": post.get("seq", post["id"])}


def user_json(user: dict) -> dict:
    return {"username": user["username"], "display_name": user.get("display_name"),
            "created_at": iso(user["created_at"]), "followers": user.get("followers", 0),
            "following": user.get("following", 0), "posts": user.get("posts", 0)}


def posts_page(reply: dict) -> Response:
    return jsonify(posts=[post_json(p) for p in reply["posts"]], next=reply.get("next"))


def no_content() -> Response:
    return Response(status=204)


def _username_arg(username: str) -> str:
    if username_problem(username) == "3 to 20 letters, digits or underscores.":
        raise ApiError(404, "not_found", "no such user")
    return username


# ----------------------------------------------------------------------------- routes


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())


@bp.get("/health")
def health():
    """Liveness of this web worker, and whether the cluster can take writes now (the
    coordinator's own answer: it alone knows which replicas count, e.g. suspect ones do)."""
    status = cluster_status()
    replicas = status.get("replicas", [])
    up = sum(1 for r in replicas if r.get("state") == "up")
    policy = status.get("policy", "majority")
    writable = bool(status.get("reachable") and status.get("writable"))
    return jsonify(status="ok", cluster_reachable=bool(status.get("reachable")),
                   writes_possible=writable, policy=policy, replicas_up=up,
                   replicas=len(replicas), committed_seq=status.get("committed_seq"))


@bp.post("/users")
def create_user():
    body = json_body({"username": str, "password": str}, {"display_name": str})
    problem = username_problem(body["username"])
    if problem:
        raise ApiError(400, "invalid", f"username: {problem}")
    if not 8 <= len(body["password"]) <= 200:
        raise ApiError(400, "invalid", "password: 8 to 200 characters")
    shown = checked("display_name", display_name, body.get("display_name"))
    # No user yet: the key is scoped to the name being signed up for. The password goes into
    # the id keyed by the app's secret: a client's key may be guessable, and the id must not
    # let anyone who sees it test password guesses.
    rid = idempotent_request_id(body["username"], "create_user", shown or "",
                                secret_digest(body["password"]))
    args = {"username": body["username"], "password_hash": auth.hash_password(body["password"])}
    if shown is not None:  # None: the username is shown
        args["display_name"] = shown
    try:
        result = _write("create_user", args, rid)
    except Conflict:
        raise ApiError(409, "conflict", "username taken") from None
    response = jsonify(user=user_json(result.reply["user"]), seq=result.seq)
    response.status_code = 201
    response.headers["Location"] = f"/api/v1/users/{result.reply['user']['username']}"
    return response


@bp.post("/tokens")
@login_limits
def create_token():
    body = json_body({"username": str, "password": str})
    user = auth.check_credentials(body["username"], body["password"], linearizable=True)
    if user is None:
        raise ApiError(401, "unauthorized", "wrong username or password")
    return jsonify(token=issue_token(user), username=user["username"],
                   expires_in=current_app.config["API_TOKEN_MAX_AGE"])


@bp.get("/users/<username>")
def get_user(username: str):
    user = cluster_access.read_linearizable("user", {"username": _username_arg(username)})["user"]
    return jsonify(user_json(user))


@bp.delete("/users/<username>")
def delete_user(username: str):
    actor = token_user()
    if actor.lower() != username.lower():
        raise ApiError(403, "forbidden", "you can delete only your own account")
    _write("delete_user", {"actor": actor}, idempotent_request_id(actor, "delete_user"))
    return no_content()


@bp.post("/posts")
def create_post():
    actor = token_user()
    text = checked("text", post_text, json_body({"text": str})["text"])
    result = _write("create_post", {"actor": actor, "text": text},
                    idempotent_request_id(actor, "create_post", text))
    response = jsonify(post_json(result.reply["post"]))
    response.status_code = 201
    return response


@bp.delete("/posts/<int:post_id>")
def delete_post(post_id: int):
    actor = token_user()
    if post_id > INT64_MAX:  # ids are int64 seqs; a larger one cannot exist (nor be encoded)
        raise ApiError(404, "not_found", "no such post")
    _write("delete_post", {"actor": actor, "id": post_id},
           idempotent_request_id(actor, "delete_post", str(post_id)))
    return no_content()


@bp.get("/users/<username>/posts")
def user_posts(username: str):
    args = {"username": _username_arg(username), **page_args()}
    return posts_page(cluster_access.read_linearizable("user_posts", args))


@bp.get("/timeline")
def home_timeline():
    actor = token_user()
    args = cluster_access.as_account({"username": actor, **page_args()}, "username")
    return posts_page(cluster_access.read_linearizable("home", args))


@bp.get("/public")
def public_timeline():
    return posts_page(cluster_access.read_linearizable("public", page_args()))


@bp.post("/follows")
def follow():
    actor = token_user()
    body = json_body({"username": str})
    target = _follow_target(actor, body["username"], "you cannot follow yourself")
    _write("follow", {"actor": actor, "target": target},
           idempotent_request_id(actor, "follow", target.lower()))
    return no_content()


@bp.delete("/follows/<username>")
def unfollow(username: str):
    actor = token_user()
    target = _follow_target(actor, username, "you cannot unfollow yourself")
    _write("unfollow", {"actor": actor, "target": target},
           idempotent_request_id(actor, "unfollow", target.lower()))
    return no_content()


def _follow_target(actor: str, username: str, self_message: str) -> str:
    # The cluster refuses oneself too, but only after giving the write a seq.
    target = _username_arg(username)
    if target.lower() == actor.lower():
        raise ApiError(403, "forbidden", self_message)
    return target


def _people(username: str, which: str):
    args = {"username": _username_arg(username), **page_args()}
    reply = cluster_access.read_linearizable(which, args)
    return jsonify(users=reply["users"], total=reply.get("total"), next=reply.get("next"))


@bp.get("/users/<username>/followers")
def followers(username: str):
    return _people(username, "followers")


@bp.get("/users/<username>/following")
def following(username: str):
    return _people(username, "following")


@bp.get("/cluster")
def cluster():
    actor = token_user()
    admins = {a.lower() for a in current_app.config["ADMINS"]}
    if actor.lower() not in admins:
        raise ApiError(403, "forbidden", "administrators only")
    status = cluster_status()
    if not status.get("reachable"):
        raise ApiError(503, "unavailable", "the coordinator cannot be reached")
    return jsonify(status)


def _write(op: str, args: dict, rid: str | None = None):
    result = cluster_access.get_cluster().write(op, cluster_access.as_account(args),
                                                request_id=rid)
    cluster_access._check(result.reply)
    return result
