"""Sweep numbers for ``GET /metrics``, read from Redis at each scrape (as
:class:`api.metrics.JobsCollector` does for jobs), so every API process reports the
same: ``mnist_sweeps{status}`` and ``mnist_sweep_trials{state}`` (trials of every
sweep in Redis; queued and running read from the trials' job records)."""

import logging
from collections import Counter
from collections.abc import Iterator

import redis
from prometheus_client.core import GaugeMetricFamily, Metric

from shared.keys import Keys
from shared.sweep_schemas import SweepStatus, TrialState
from shared.sweeps import SweepStore, live_view

log = logging.getLogger(__name__)


class SweepsCollector:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            sweeps = [
                live_view(self.redis, self.keys, sweep)
                for sweep in SweepStore(self.redis, self.keys).all_sweeps()
            ]
        except redis.RedisError as exc:  # mnist_redis_up (JobsCollector) says so
            log.warning("metrics: sweeps unavailable: %s", exc)
            return
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
