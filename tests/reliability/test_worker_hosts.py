"""Workers on three hosts, one host cut off from the network mid-job: the jobs it held are taken over by the other
hosts once their lease is gone, never run alongside their first attempt, complete once; and when the cut heals, the
host's own worker (the same process) reconnects and runs jobs again. The full count, with several cuts under heavy
load, is tests/benchmarks/test_worker_hosts_full.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.host_cuts import HEARTBEAT_S, LEASE_MS, HostCuts, Servers, hosts_and_servers
from tests.support.fault_reports import REPORTS

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with hosts_and_servers(3) as made:
        yield made


def test_a_host_cut_off_mid_job_has_its_jobs_taken_over_once_and_its_worker_rejoins_after_the_heal(
    servers: Servers,
) -> None:
    # Jobs long enough that the host holds some mid-run at the cut, and run only as fast as the hosts keep up.
    with HostCuts(servers, threads=4, ms=5000, api_per_second=1.5, api_burst=3, sender_pause_s=2.0) as run:
        run.warm_up(done=3)
        run.cut_and_heal(0, min_held=2)
        outcome = run.finish()
    REPORTS.append(
        outcome.report(f"one worker host of three cut off mid-job (lease {LEASE_MS} ms, heartbeat {HEARTBEAT_S} s)")
    )
    print(outcome.summary())
    outcome.check()
