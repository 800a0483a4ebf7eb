"""The Celery configuration both sides share. The API sends tasks by name with
its own client, so it never imports worker code."""

from celery import Celery

from shared.config import Settings

TRAIN_TASK = "mnist.train"
QUEUE = "training"


def make_celery(settings: Settings, main: str = "mnist") -> Celery:
    app = Celery(main, broker=settings.redis_url)
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
        broker_transport_options={"global_keyprefix": settings.key_prefix + "celery:"},
        worker_hijack_root_logger=False,
    )
    return app
