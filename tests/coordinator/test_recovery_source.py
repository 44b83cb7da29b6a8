"""Where a replica being caught up gets its missing writes (coordinator/recovery.py `_source`,
`_reach`), in-process: an up replica's log, or after a takeover the agreed part of the log of
a replica that is itself being rebuilt."""

from __future__ import annotations

from tests.coordinator.test_read_hedging import started_coordinator
from webfront.coordinator.broadcaster import RECOVERING


def test_an_up_replica_is_preferred_to_one_being_rebuilt_that_reaches_as_far(tmp_path):
    with started_coordinator(tmp_path) as c:
        rebuilt, up, target = c.links
        c.sequencer.last_seq = 10
        rebuilt.state, rebuilt.receives_writes, rebuilt.valid_seq = RECOVERING, False, 10
        rebuilt.fenced_conn = rebuilt.conn
        up.acked_seq = 10
        target.state, target.receives_writes = RECOVERING, False
        assert c.recovery._source(target, 5, log=True) is up
        up.acked_seq = 8  # now only the one being rebuilt holds 9 and 10
        assert c.recovery._source(target, 9, log=True) is rebuilt
        assert c.recovery._source(target, 9) is None  # a snapshot comes from an up one only


def test_a_log_is_never_forwarded_beyond_the_agreed_part_nor_the_last_seq(tmp_path):
    with started_coordinator(tmp_path) as c:
        rebuilt = c.links[0]
        rebuilt.state, rebuilt.receives_writes = RECOVERING, False
        c.sequencer.last_seq = 10
        rebuilt.valid_seq = 7
        assert c.recovery._reach(rebuilt) == 7
        rebuilt.valid_seq = 12  # a replica without `le` that is ahead of the cluster
        assert c.recovery._reach(rebuilt) == 10
