"""The OpenAPI 3.1 document of /api/v1 (kept beside the routes; a test checks they agree)."""

from __future__ import annotations

from typing import Any

from .inputs import INT64_MAX
from .request_ids import KEY_RE, KEY_RULE


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _err(status: str, text: str) -> tuple[str, dict]:
    return status, {"description": text, **_json(_ref("Error"))}


ERRORS = {
    "400": ("Malformed or too deeply nested JSON, a string that is not valid UTF-8, a missing "
            "field, a field of the wrong type or against its rules (control characters, "
            "text-direction overrides, length), a query parameter that is not a number in "
            "range, or a malformed Idempotency-Key; nothing changed."),
    "401": "Missing, invalid or expired bearer token, or one issued for an account that was "
           "deleted (error code `account_replaced`): get a new token.",
    "403": "Not allowed for this user.",
    "404": "No such user or post.",
    "409": "Username taken.",
    "413": "Request body too large.",
    "429": "Too many login attempts.",
    "503": "Writes unavailable: no majority of replicas reachable.",
}


def _responses(ok: dict, *errors: str) -> dict:
    out = dict(ok)
    for code in errors:
        out[code] = {"description": ERRORS[code], **_json(_ref("Error"))}
    return out


USERNAME = {"name": "username", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_]{3,20}$"}}
PAGING = [
    {"name": "before", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 0, "maximum": INT64_MAX},
     "description": "Only items strictly older than this id / seq (the `next` of a page)."},
    {"name": "limit", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
]
BEARER = [{"bearer": []}]
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "pattern": f"^{KEY_RE.pattern}$"},
    "description": (
        f"Makes a retry safe: {KEY_RULE}, bare or as a quoted string. The same key from the "
        "same user (for POST /users: the same username) on the same operation with the same "
        "body and path is one request: it is applied once and every retry gets the first "
        "result, also after a 503 whose outcome was open (a DELETE retried with its key "
        "answers 204 again, not 404). The same key with another body or path (another text, "
        "password or post id) is another request, applied on its own. Use a new key (a UUID) "
        "per request. The cluster remembers the last 100,000 requests."),
}


def openapi_document() -> dict[str, Any]:
    posts_page = {"200": {"description": "A page of posts, newest first.",
                          **_json(_ref("PostPage"))}}
    people_page = {"200": {"description": "A page of users, newest edge first.",
                           **_json(_ref("UserPage"))}}
    no_content = {"204": {"description": "Done."}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "webfront social network API",
            "version": "1.0.0",
            "description": (
                "Sign up, get a token, post, follow, read timelines. Data lives on a replicated "
                "cluster; reads are linearizable. Times are ISO 8601 UTC strings. Writes (POST "
                "and DELETE) take an optional Idempotency-Key header, so a retry is applied "
                "once and gets the first answer."),
        },
        "servers": [{"url": "/api/v1"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "A token from POST /tokens."}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {
                    "error": {"type": "object", "required": ["code", "message"], "properties": {
                        "code": {"type": "string"}, "message": {"type": "string"}}}}},
                "User": {"type": "object", "properties": {
                    "username": {"type": "string"}, "display_name": {"type": "string"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "followers": {"type": "integer"}, "following": {"type": "integer"},
                    "posts": {"type": "integer"}}},
                "Post": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "author": {"type": "string"},
                    "text": {"type": "string", "maxLength": 280},
                    "created_at": {"type": "string", "format": "date-time"},
                    "seq": {"type": "integer"}}},
                "PostPage": {"type": "object", "properties": {
                    "posts": {"type": "array", "items": _ref("Post")},
                    "next": {"type": ["integer", "null"]}}},
                "UserPage": {"type": "object", "properties": {
                    "users": {"type": "array", "items": {"type": "object", "properties": {
                        "username": {"type": "string"}, "display_name": {"type": "string"},
                        "since": {"type": "integer"}}}},
                    "total": {"type": "integer"}, "next": {"type": ["integer", "null"]}}},
            },
        },
        "paths": {
            "/openapi.json": {"get": {"summary": "This document.", "responses": {
                "200": {"description": "The OpenAPI document."}}}},
            "/health": {"get": {"summary": "Liveness, and whether writes are possible now.",
                                "responses": {"200": {"description": "Alive.", **_json({
                                    "type": "object", "properties": {
                                        "status": {"type": "string"},
                                        "cluster_reachable": {"type": "boolean"},
                                        "writes_possible": {"type": "boolean"}}})}}}},
            "/users": {"post": {
                "summary": "Create an account.", "parameters": [IDEMPOTENCY_KEY],
                "requestBody": {"required": True, **_json({
                    "type": "object", "required": ["username", "password"], "properties": {
                        "username": {"type": "string", "pattern": "^[A-Za-z0-9_]{3,20}$"},
                        "password": {"type": "string", "minLength": 8, "maxLength": 200},
                        "display_name": {"type": "string", "maxLength": 50}}})},
                "responses": _responses({"201": {"description": "Created.", **_json({
                    "type": "object", "properties": {"user": _ref("User"),
                                                     "seq": {"type": "integer"}}})}},
                    "400", "409", "413", "503")}},
            "/tokens": {"post": {
                "summary": "Log in: get a signed bearer token that expires.",
                "requestBody": {"required": True, **_json({
                    "type": "object", "required": ["username", "password"], "properties": {
                        "username": {"type": "string"}, "password": {"type": "string"}}})},
                "responses": _responses({"200": {"description": "A token.", **_json({
                    "type": "object", "properties": {"token": {"type": "string"},
                                                     "expires_in": {"type": "integer"}}})}},
                    "400", "401", "429")}},
            "/users/{username}": {
                "parameters": [USERNAME],
                "get": {"summary": "A user's profile.", "responses": _responses(
                    {"200": {"description": "The user.", **_json(_ref("User"))}}, "404")},
                "delete": {"summary": "Delete your own account, its posts and follows.",
                           "security": BEARER, "parameters": [IDEMPOTENCY_KEY],
                           "responses": _responses(
                               no_content, "400", "401", "403", "404", "503")}},
            "/users/{username}/posts": {"get": {
                "summary": "A user's posts.", "parameters": [USERNAME, *PAGING],
                "responses": _responses(posts_page, "400", "404")}},
            "/users/{username}/followers": {"get": {
                "summary": "Who follows the user.", "parameters": [USERNAME, *PAGING],
                "responses": _responses(people_page, "400", "404")}},
            "/users/{username}/following": {"get": {
                "summary": "Whom the user follows.", "parameters": [USERNAME, *PAGING],
                "responses": _responses(people_page, "400", "404")}},
            "/posts": {"post": {
                "summary": "Publish a post.", "security": BEARER,
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": {"required": True, **_json({
                    "type": "object", "required": ["text"], "properties": {
                        "text": {"type": "string", "minLength": 1, "maxLength": 280}}})},
                "responses": _responses({"201": {"description": "The new post.",
                                                 **_json(_ref("Post"))}},
                                        "400", "401", "413", "503")}},
            "/posts/{id}": {"delete": {
                "summary": "Delete your own post.", "security": BEARER,
                "parameters": [{"name": "id", "in": "path", "required": True,
                                "schema": {"type": "integer"}}, IDEMPOTENCY_KEY],
                "responses": _responses(no_content, "400", "401", "403", "404", "503")}},
            "/timeline": {"get": {
                "summary": "Your home timeline: your posts and those of whom you follow.",
                "security": BEARER, "parameters": PAGING,
                "responses": _responses(posts_page, "400", "401")}},
            "/public": {"get": {"summary": "Everyone's posts.", "parameters": PAGING,
                                "responses": _responses(posts_page, "400")}},
            "/follows": {"post": {
                "summary": "Follow a user.", "security": BEARER,
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": {"required": True, **_json({
                    "type": "object", "required": ["username"], "properties": {
                        "username": {"type": "string"}}})},
                "responses": _responses(no_content, "400", "401", "403", "404", "503")}},
            "/follows/{username}": {"delete": {
                "summary": "Stop following a user.", "security": BEARER,
                "parameters": [USERNAME, IDEMPOTENCY_KEY],
                "responses": _responses(no_content, "400", "401", "403", "404", "503")}},
            "/cluster": {"get": {
                "summary": "The cluster's status (administrators only).", "security": BEARER,
                "responses": _responses({"200": {"description": "Every replica's state.",
                                                 **_json({"type": "object"})}},
                                        "401", "403", "503")}},
        },
    }
