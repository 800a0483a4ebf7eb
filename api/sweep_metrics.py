"""Sweep numbers for ``GET /metrics``, read from Redis at each scrape (as
:class:`api.metrics.JobsCollector` does for jobs), so every API process reports the
same: ``mnist_sweeps{status}`` and ``mnist_sweep_trials{state}`` (trials of every
sweep in Redis; queued and running read from the trials' job records)."""

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from api.scraped import Scraped
from shared.schemas.sweeps import SweepPublic, SweepStatus, TrialState
from shared.sweeps.sweeper import Sweeper


class SweepsCollector(Scraped[list[SweepPublic]]):
    def __init__(self, sweeps: Sweeper) -> None:
        super().__init__("sweeps", lambda: [sweeps.view(s) for s in sweeps.store.all_sweeps()])

    def families(self, sweeps: list[SweepPublic]) -> Iterator[Metric]:
        statuses = Counter(sweep.status for sweep in sweeps)
        states = Counter(trial.state for sweep in sweeps for trial in sweep.trials)
        by_status = GaugeMetricFamily(
            "mnist_sweeps", "Hyper-parameter sweeps in Redis by status.", labels=["status"]
        )
        for status in SweepStatus:
            by_status.add_metric([status.value], statuses.get(status, 0))
        yield by_status
        by_state = GaugeMetricFamily(
            "mnist_sweep_trials", "Trials of the sweeps in Redis by state.", labels=["state"]
        )
        for state in TrialState:
            by_state.add_metric([state.value], states.get(state, 0))
        yield by_state
