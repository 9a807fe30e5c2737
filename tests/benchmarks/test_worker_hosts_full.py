"""Workers on three hosts at full count: thousands of jobs through the API and actor.send() while the hosts are cut
off from the network one after another, for a few seconds to most of a minute each, and healed again
(tests/reliability/test_worker_hosts.py runs one short cut in `make test`). Prints the figures: jobs sent, completed,
lost, run twice; per cut how soon the held jobs were taken over and the host's worker rejoined."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.reliability.host_cuts import HEARTBEAT_S, LEASE_MS, HostCuts, Servers, hosts_and_servers
from tests.support.fault_reports import table

#: (host, seconds it stays cut): past the node's heartbeat timeout (about 5 s), past the worker's own (about 12 s),
#: past several of its reconnection attempts, and once more on the first host.
CUTS = [(0, 8.0), (1, 20.0), (2, 45.0), (0, 12.0)]
#: Jobs flow this long between a heal and the next cut.
BETWEEN_S = 10.0


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with hosts_and_servers(3) as made:
        yield made


@pytest.mark.timeout(1200)
def test_thousands_of_jobs_survive_hosts_cut_off_and_healed_one_after_another(servers: Servers) -> None:
    # Short jobs for the count, a long one in ten so every host holds some mid-run whenever it is cut.
    with HostCuts(
        servers,
        threads=8,
        ms=100,
        api_per_second=20,
        api_burst=10,
        long_every=10,
        long_ms=6000,
        sender_ms=100,
        sender_pause_s=0.05,
    ) as run:
        run.warm_up(done=200)
        for host, stay_s in CUTS:
            run.cut_and_heal(host, min_held=2, stay_cut_s=stay_s)
            time.sleep(BETWEEN_S)
        outcome = run.finish(timeout=300)
    report = outcome.report(
        f"worker hosts cut off one after another, {len(CUTS)} cuts of 8-45 s (3 hosts x 8 threads, lease {LEASE_MS} "
        f"ms, heartbeat {HEARTBEAT_S} s, API and actor.send() enqueuing, full count)"
    )
    print("\n".join(table([report])))
    outcome.check()
