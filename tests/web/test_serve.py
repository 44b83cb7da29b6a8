"""`webfront web` options: where the session key comes from, the app's config."""

from __future__ import annotations

import logging
import time

import pytest

from webfront.web import create_app
from webfront.web.serve import app_config, parse_args, session_key


def test_session_key_from_file(tmp_path, monkeypatch):
    monkeypatch.delenv("WEBFRONT_SECRET_KEY", raising=False)
    key = tmp_path / "k"
    key.write_text("from-a-file\n")
    args = parse_args(["--session-key-file", str(key)])
    assert session_key(args) == "from-a-file"
    key.write_text("")
    with pytest.raises(SystemExit):
        session_key(args)


def test_session_key_from_env(monkeypatch):
    monkeypatch.setenv("WEBFRONT_SECRET_KEY", "from-env")
    assert session_key(parse_args([])) == "from-env"


def test_session_key_generated_into_data_dir_once(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("WEBFRONT_SECRET_KEY", raising=False)
    args = parse_args(["--data-dir", str(tmp_path)])
    with caplog.at_level(logging.WARNING, logger="webfront.web"):
        first = session_key(args)
    assert len(first) >= 32 and (tmp_path / "session.key").read_text() == first
    assert "generated" in caplog.text and str(tmp_path) in caplog.text
    assert (tmp_path / "session.key").stat().st_mode & 0o777 == 0o600
    assert session_key(args) == first  # kept across restarts


def test_app_config_from_args(monkeypatch):
    monkeypatch.setenv("WEBFRONT_SECRET_KEY", "k")
    args = parse_args(["--bind", "127.0.0.1:9999", "--coordinator", "127.0.0.1:7100",
                       "--workers", "4", "--admins", "ann, bob,"])
    config = app_config(args)
    assert config["COORDINATOR"] == "127.0.0.1:7100" and config["ADMINS"] == ["ann", "bob"]
    assert args.workers == 4 and args.bind == "127.0.0.1:9999"
    app = create_app(config)
    assert app.config["SESSION_COOKIE_HTTPONLY"] and app.config["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_app_refuses_to_start_without_a_key(monkeypatch):
    monkeypatch.delenv("WEBFRONT_SECRET_KEY", raising=False)
    with pytest.raises(RuntimeError, match="no session key"):
        create_app({"COORDINATOR": "127.0.0.1:1"})


def test_login_counters_kept_in_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("WEBFRONT_SECRET_KEY", "k")
    config = app_config(parse_args(["--data-dir", str(tmp_path)]))
    assert config["RATELIMIT_STORAGE_URI"] == f"sqlite://{tmp_path / 'login-limits.sqlite'}"


def test_sqlite_limit_store_counts_expires_and_refuses_a_relative_path(tmp_path):
    from webfront.web.limit_store import SQLiteStorage

    path = tmp_path / "limits.sqlite"
    one, other = SQLiteStorage(f"sqlite://{path}"), SQLiteStorage(f"sqlite://{path}")
    assert one.incr("k", 60) == 1 and other.incr("k", 60) == 2 and one.get("k") == 2
    assert 0 < other.get_expiry("k") - time.time() <= 60
    assert one.incr("short", 0.2) == 1
    time.sleep(0.3)
    assert other.get("short") == 0 and one.incr("short", 60) == 1  # a new window
    other.clear("k")
    assert one.get("k") == 0 and one.check()
    with pytest.raises(ValueError, match="absolute path"):
        SQLiteStorage("sqlite://relative.sqlite")
