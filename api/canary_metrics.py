"""The splits' service-wide numbers for ``GET /metrics``, read from Redis at each
scrape (as :class:`api.sweep_metrics.SweepsCollector` does for sweeps), so every API
process reports the same: ``mnist_shadow_agreement_ratio{alias}``, the share of the
images a split's candidate labelled as the primary did, for every split that has
compared any. (Per process: ``mnist_predictions_total{endpoint,alias,variant}`` and
``mnist_shadow_dropped_total`` in :mod:`api.metrics`.)"""

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from api.scraped import Scraped
from shared.registry.canary import Splits
from shared.schemas.canary import SplitView


class SplitsCollector(Scraped[list[SplitView]]):
    def __init__(self, splits: Splits) -> None:
        super().__init__("splits", splits.views)

    def families(self, views: list[SplitView]) -> Iterator[Metric]:
        agreement = GaugeMetricFamily(
            "mnist_shadow_agreement_ratio",
            "Share of the images compared in an alias's shadow split where the candidate "
            "gave the primary's label, summed over every API process.",
            labels=["alias"],
        )
        for view in views:
            if view.stats.shadow.agreement is not None:
                agreement.add_metric([view.alias], view.stats.shadow.agreement)
        yield agreement
