"""What the service-wide collectors of ``GET /metrics`` share: each reads its store in
Redis at every scrape, so every API process reports the same numbers, and a store
that does not answer leaves its metrics out of that scrape (``mnist_redis_up``, from
:class:`api.metrics.JobsCollector`, says why) instead of failing the whole page."""

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

import redis
from prometheus_client.core import Metric

log = logging.getLogger(__name__)

T = TypeVar("T")


class Scraped(ABC, Generic[T]):
    """A collector of what ``read()`` answers at each scrape, as :meth:`families`."""

    def __init__(
        self,
        what: str,
        read: Callable[[], T],
        unavailable: tuple[type[Exception], ...] = (redis.RedisError,),
    ) -> None:
        self.what, self.read, self.unavailable = what, read, unavailable

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration; the names are unique

    def collect(self) -> Iterator[Metric]:
        try:
            data = self.read()
        except self.unavailable as exc:
            log.warning("metrics: %s unavailable: %s", self.what, exc)
            return
        yield from self.families(data)

    @abstractmethod
    def families(self, data: T) -> Iterator[Metric]:
        """The metrics of one scrape's ``data``."""
