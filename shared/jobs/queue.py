"""The training queue: the Celery configuration both sides share, the one place that
puts a job's message on the queue, and how many messages wait.

The API sends tasks by name with its own Celery client, so it never imports worker
code; a job's message carries only its id (the job record in Redis is the truth), and
its task id is the job id, so a message sent twice is one job (the lease lets one
process train it).

The broker is the service's Redis wherever it is (shared/redisdb/client.py,
:func:`~shared.redisdb.client.celery_broker`): ``REDIS_URL``, or through Redis
Sentinel, with the master's name and the sentinels' password where Celery looks for
them. Results are never stored (the job records are the results): behind Sentinel the
result backend is set to the same place only so that nothing Celery does reaches for
another Redis, and messages are sent with ``ignore_result`` so that the sender
subscribes to no result.
"""

from uuid import UUID

import redis
from celery import Celery

from shared.config import Settings
from shared.redisdb.client import RedisTarget, celery_broker
from shared.redisdb.keys import Keys

TRAIN_TASK = "mnist.train"
QUEUE = "training"
PRIORITY_STEPS = (0, 3, 6, 9)
"""Kombu's Redis transport keeps one list per priority step (``<queue>\\x06\\x16<n>``)."""


class QueueUnavailable(Exception):
    """The broker did not take the message."""


def make_celery(settings: Settings, main: str = "mnist") -> Celery:
    broker, sentinel = celery_broker(RedisTarget.of(settings))
    app = Celery(main, broker=broker)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,  # job records in Redis are the results
        task_default_queue=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=settings.worker_concurrency,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"global_keyprefix": settings.key_prefix + "celery:", **sentinel},
        worker_hijack_root_logger=False,
    )
    if sentinel:  # both, or the backend's pool asks the sentinels for a master named None
        app.conf.update(result_backend=broker, result_backend_transport_options=dict(sentinel))
    return app


class TrainingQueue:
    """Send a job's message; read the queue's depth (Kombu's lists, read here only)."""

    def __init__(self, celery: Celery, client: redis.Redis, keys: Keys) -> None:
        self.celery, self.redis, self.keys = celery, client, keys

    def send(self, job_id: UUID) -> None:
        """Queue the job; :class:`QueueUnavailable` if the broker refused it."""
        try:
            self.celery.send_task(
                TRAIN_TASK, args=[str(job_id)], task_id=str(job_id), ignore_result=True
            )
        except Exception as exc:  # kombu raises its own and the transport's errors
            raise QueueUnavailable("broker unreachable") from exc

    def depth(self) -> int:
        """Messages waiting in the training queue, over all priority steps."""
        base = self.keys.celery_queue(QUEUE)
        names = [base if step == 0 else f"{base}\x06\x16{step}" for step in PRIORITY_STEPS]
        with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.llen(name)
            return sum(pipe.execute())
