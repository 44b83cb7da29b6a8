"""What a client is told when its request cannot be served now, driven in-process: a moment to
wait out (`retry`: the coordinator is choosing its epoch, or enough replicas are connected but
some are still being caught up) or an outage (too few replicas connected).

Found by `bench failover`: just after a coordinator restart, the replicas that had not applied
the old coordinator's last writes are caught up first, and writes arriving in those few
milliseconds failed with `no majority of replicas is up` (3 and 17 writes in two runs) instead
of being retried."""

from __future__ import annotations

import pytest

from tests.coordinator.test_ack_counting import Client
from tests.coordinator.test_read_hedging import started_coordinator
from webfront.coordinator.broadcaster import DOWN, RECOVERING
from webfront.coordinator.core import Coordinator


@pytest.fixture
def coordinator(tmp_path):
    with started_coordinator(tmp_path) as c:
        yield c


def catching_up(c: Coordinator, *ids: str) -> None:
    for link in c.links:
        if link.id in ids:
            link.state, link.receives_writes = RECOVERING, False


def down(c: Coordinator, *ids: str) -> None:
    for link in c.links:
        if link.id in ids:
            link.state, link.receives_writes, link.conn = DOWN, False, None


def write(c: Coordinator) -> dict:
    client = Client()
    c.client_write(client, 1, "rid-1", b"")
    return client.frames[-1]


def read(c: Coordinator) -> dict:
    client = Client()
    c.reads.submit(client, 1, "user", {"username": "ann"}, 0)
    return client.frames[-1]


def test_a_majority_connected_but_catching_up_is_a_moment_the_client_waits_out(coordinator):
    catching_up(coordinator, "2", "3")  # one up: no majority receives writes yet
    assert write(coordinator) == {"t": "err", "id": 1, "code": "unavailable", "retry": True}
    catching_up(coordinator, "1")  # nobody receives writes: reads wait too
    assert read(coordinator) == {"t": "err", "id": 1, "code": "unavailable", "retry": True}


def test_too_few_replicas_connected_is_an_outage_and_said_so(coordinator):
    catching_up(coordinator, "2")
    down(coordinator, "3")
    assert write(coordinator)["retry"] is True  # one up, one catching up: a majority connected
    down(coordinator, "2")
    assert write(coordinator) == {"t": "err", "id": 1, "code": "unavailable"}
    down(coordinator, "1")
    assert read(coordinator) == {"t": "err", "id": 1, "code": "unavailable"}


def test_a_coordinator_choosing_its_epoch_says_retry_and_a_fenced_one_does_not(coordinator):
    coordinator.started = False
    assert write(coordinator)["retry"] is True
    coordinator.fenced = True
    assert "retry" not in write(coordinator)
