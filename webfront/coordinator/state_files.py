"""The coordinator's files in its state dir (`epoch.json`, `members.json`): read strictly,
written whole.

A missing file is a first start. A file that is there but cannot be read or parsed is an
error the operator must see: starting from a guess (epoch 0 with no history, or the configured
membership instead of the stored one) would quietly undo what the file recorded. A write goes
to a temporary file that is fsynced and renamed, so a crash leaves the old file or the new one;
a write that fails (a full disk) raises and leaves the old file as it was.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class StateDirError(Exception):
    """A state file could not be read, parsed or stored. The message names the file."""


def read_state_file(path: Path) -> dict | None:
    """The file's JSON object, or None when there is no such file yet."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateDirError(f"cannot read {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise StateDirError(f"{path} is corrupt ({exc}); restore it from a backup, or see "
                            "docs/operations.md, \"The coordinator's state dir\"") from exc
    if not isinstance(data, dict):
        raise StateDirError(f"{path} is corrupt (not a JSON object)")
    return data


def write_state_file(path: Path, data: object) -> None:
    """Write, fsync and rename, then fsync the directory: the file is old or new, never torn.
    Raises StateDirError (the old file untouched) when any step fails."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise StateDirError(f"cannot store {path}: {exc}") from exc
