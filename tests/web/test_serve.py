"""`webfront web` as a process: what it leaves outside its own files."""

from __future__ import annotations

from .web_process import running_web


def test_no_gunicorn_control_socket_shared_between_web_front_ends(web_cluster, tmp_path):
    """gunicorn's control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl): a
    second web front end took it over, and stopping either deleted it."""
    home = tmp_path / "home"
    home.mkdir()
    with running_web(web_cluster, tmp_path, workers=1, env={"HOME": str(home)}):
        assert not (home / ".gunicorn").exists()
