"""Input drift's metrics, read from Redis at each scrape through the drift monitor
(shared/drift/monitor.py), so every API process reports the same values:
``mnist_input_drift_psi{model_id,feature}`` (the population stability index of each
summary of the model's window against its reference profile) and
``mnist_input_drift_window{model_id}`` (the inputs in that window). Models without a
reference profile yet are left out: a scrape never computes one (the first
``GET /models/{id}/drift`` does)."""

from collections.abc import Iterator

import redis
from prometheus_client.core import GaugeMetricFamily, Metric

from api.scraped import Scraped
from shared.artifacts.base import StoreUnavailable
from shared.drift.monitor import DriftMonitor
from shared.schemas.models import DriftReport


class DriftCollector(Scraped[list[DriftReport]]):
    def __init__(self, monitor: DriftMonitor) -> None:
        super().__init__("drift", monitor.reports, (redis.RedisError, StoreUnavailable))

    def families(self, reports: list[DriftReport]) -> Iterator[Metric]:
        psi = GaugeMetricFamily(
            "mnist_input_drift_psi",
            "Population stability index of each input summary (and of the answers) of the "
            "model's last DRIFT_WINDOW inputs against its reference profile; above "
            "DRIFT_PSI_THRESHOLD (0.2) is drift.",
            labels=["model_id", "feature"],
        )
        window = GaugeMetricFamily(
            "mnist_input_drift_window",
            "Inputs in the model's drift window (a PSI counts once it holds DRIFT_MIN_SAMPLES).",
            labels=["model_id"],
        )
        for report in reports:
            window.add_metric([str(report.model_id)], report.window)
            for feature, value in report.psi.items():
                if value is not None:
                    psi.add_metric([str(report.model_id), feature], value)
        yield psi
        yield window
