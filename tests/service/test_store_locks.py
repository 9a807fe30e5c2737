"""A key held with a token is given back only by its holder, whoever else comes by meanwhile."""

from __future__ import annotations

from service.kits.once import Once
from service.ops.jobs import Jobs
from service.store import keys, locks


def test_a_key_is_deleted_only_while_it_still_holds_the_token_given(jobs: Jobs) -> None:
    client = jobs.store.client
    client.set("jobs:lock:t", "theirs")  # the caller's own claim lapsed and another holder took the key
    assert not locks.release(client, "jobs:lock:t", "mine")
    assert client.get("jobs:lock:t") == "theirs"
    assert locks.release(client, "jobs:lock:t", "theirs")
    assert client.exists("jobs:lock:t") == 0


def test_a_lock_taken_meanwhile_by_another_is_not_freed_when_the_first_holder_leaves(jobs: Jobs) -> None:
    client = jobs.store.client
    with locks.exclusive(client, "t", 30_000) as held:
        assert held
        with locks.exclusive(client, "t", 30_000) as also:
            assert not also
        client.set(keys.lock("t"), "another run's token")  # as if ours lapsed and another run took it
    assert client.get(keys.lock("t")) == "another run's token"


def test_a_side_effect_claim_released_is_free_again_but_a_recorded_outcome_stays(jobs: Jobs) -> None:
    once = Once(jobs.store.client, "test", claim_ms=30_000)
    assert not once.claim("j1").busy
    once.release("j1")
    assert not once.claim("j1").busy  # free again: this run takes it
    once.record("j1", {"sent": True})
    once.release("j1")  # too late: the side effect happened
    assert once.claim("j1").done == {"sent": True}
