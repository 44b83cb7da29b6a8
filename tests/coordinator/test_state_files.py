"""The coordinator's state files: a damaged one stops the start with its name, a store that
fails changes nothing (webfront/coordinator/state_files.py)."""

from __future__ import annotations

import json

import pytest

from webfront.cli import RestartBackoff
from webfront.coordinator.config import ReplicaConfig
from webfront.coordinator.epochs import EpochStore
from webfront.coordinator.membership import MembershipStore
from webfront.coordinator.state_files import StateDirError, read_state_file

MEMBERS = [ReplicaConfig("1", "127.0.0.1", 7001), ReplicaConfig("2", "127.0.0.1", 7002)]


def test_a_missing_file_is_a_first_start(tmp_path):
    assert read_state_file(tmp_path / "epoch.json") is None
    store = EpochStore(str(tmp_path))
    assert (store.epoch, store.history) == (0, [])


@pytest.mark.parametrize("text", ['{"epoch": 7, "hist', "", "[1, 2]", '{"history": []}',
                                  '{"epoch": "seven"}'])
def test_a_damaged_epoch_file_is_an_error_naming_it_and_is_left_alone(tmp_path, text):
    path = tmp_path / "epoch.json"
    path.write_text(text)
    with pytest.raises(StateDirError, match="epoch.json is corrupt"):
        EpochStore(str(tmp_path))
    assert path.read_text() == text


def test_a_damaged_membership_is_not_replaced_by_the_configured_one(tmp_path):
    path = tmp_path / "members.json"
    path.write_text('{"replicas": [{"id": "1", "host": "127.0.0.1"}]}')  # no port
    with pytest.raises(StateDirError, match="members.json is corrupt"):
        MembershipStore(str(tmp_path)).load(MEMBERS)
    assert "7001" not in path.read_text()


def test_an_unreadable_file_is_an_error_too(tmp_path):
    (tmp_path / "epoch.json").mkdir()  # a directory where the file should be
    with pytest.raises(StateDirError, match="cannot read"):
        EpochStore(str(tmp_path))


def test_a_failed_store_changes_nothing_in_memory_or_on_disk(tmp_path):
    store = EpochStore(str(tmp_path))
    store.claim(3)
    store.begin(3, 101)
    before = (tmp_path / "epoch.json").read_text()
    # The temporary file's name taken by a directory: open() fails as on a full disk.
    (tmp_path / "epoch.json.tmp").mkdir()
    with pytest.raises(StateDirError, match="cannot store"):
        store.claim(4)
    with pytest.raises(StateDirError, match="cannot store"):
        store.begin(4, 200)
    assert (store.epoch, store.history) == (3, [(3, 101)])
    assert (tmp_path / "epoch.json").read_text() == before
    assert json.loads(before) == {"epoch": 3, "history": [[3, 101]]}

    members = MembershipStore(str(tmp_path))
    assert members.load(MEMBERS) == MEMBERS
    (tmp_path / "members.json.tmp").mkdir()
    with pytest.raises(StateDirError):
        members.save(MEMBERS[:1])
    assert members.load([]) == MEMBERS


def test_restarts_back_off_only_while_the_process_keeps_exiting_early():
    backoff = RestartBackoff(first=0.1, most=1.0, lasted=10.0)
    assert backoff.delay(ran_for=3600) == 0  # a crash after a long run: at once
    assert backoff.delay(ran_for=0.3) == 0  # the first early exit: at once too
    assert [backoff.delay(ran_for=0.3) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.delay(ran_for=12) == 0  # it ran a while: the count starts over
    assert backoff.delay(ran_for=0.3) == 0


def test_valid_through_cuts_a_replicas_writes_where_a_newer_epoch_began():
    store = EpochStore(None)
    store.history = [(1, 1), (2, 11), (4, 20)]  # epoch 3 claimed, never began
    assert store.valid_through(15, 2) == 15  # epoch 2 still owns 15
    assert store.valid_through(12, 1) == 10  # epoch 2 began at 11: 11 and 12 are void
    assert store.valid_through(25, 2) == 19  # epoch 4 began at 20
    assert store.valid_through(25, 4) == 25
    assert store.valid_through(10, 1) == 10  # all before epoch 2 began
    assert store.valid_through(0, 0) == 0
    for applied, last in ((12, 1), (25, 2), (15, 2), (25, 4)):
        assert store.stale_suffix(applied, last) == (store.valid_through(applied, last)
                                                     < applied)
