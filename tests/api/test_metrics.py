"""The metrics collector over a real Redis, and route labels in-process."""

import uuid

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import EPOCH_BUCKETS, JobsCollector
from shared.config import Settings
from shared.jobs.queue import QUEUE
from shared.jobs.store import JobStore
from shared.redisdb.keys import Keys
from shared.registry.aliases import Aliases
from shared.registry.store import ModelRegistry
from shared.schemas.jobs import EpochRecord, Job, JobStatus
from shared.schemas.params import TrainParams
from shared.services import Services
from tests import models
from tests.procs import free_port


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _scrape(services: Services, collector: JobsCollector | None = None) -> dict:
    prometheus = CollectorRegistry()
    prometheus.register(collector or JobsCollector(services))
    return _samples(generate_latest(prometheus).decode())


def _create(jobs: JobStore, job: Job) -> None:
    assert jobs.create(job, max_queued=100).created


def _job(jobs: JobStore, epochs: int, seconds: list[float]) -> uuid.UUID:
    job = Job(id=uuid.uuid4(), params=TrainParams(epochs=epochs), epochs=epochs)
    _create(jobs, job)
    jobs.update(job.id, lambda j: j.model_copy(update={"status": JobStatus.running}))
    for epoch, s in enumerate(seconds, 1):
        jobs.record_epoch(job.id, EpochRecord(epoch=epoch, cost=1.0, seconds=s, eta=0.1))
    return job.id


def test_jobs_epochs_and_epoch_seconds_from_redis(services: Services, keys: Keys) -> None:
    jobs = services.jobs
    collector = JobsCollector(services)
    done = _job(jobs, 3, [0.004, 0.02, 0.3])
    jobs.finish(done, JobStatus.succeeded)
    running = _job(jobs, 10, [0.02, 0.02])
    _create(jobs, Job(id=uuid.uuid4(), params=TrainParams(), epochs=1000))

    samples = _scrape(services, collector)
    assert samples[("mnist_redis_up", ())] == 1
    status = {s.value: samples[("mnist_jobs", (("status", s.value),))] for s in JobStatus}
    assert status == {"queued": 1, "running": 1, "succeeded": 1, "failed": 0, "cancelled": 0}
    assert samples[("mnist_training_epochs_total", ())] == 5
    assert samples[("mnist_epoch_duration_seconds_count", ())] == 5
    assert abs(samples[("mnist_epoch_duration_seconds_sum", ())] - 0.364) < 1e-9
    assert samples[("mnist_epoch_duration_seconds_bucket", (("le", "0.005"),))] == 1
    assert samples[("mnist_epoch_duration_seconds_bucket", (("le", "0.025"),))] == 4
    assert samples[("mnist_epoch_duration_seconds_bucket", (("le", "0.5"),))] == 5
    assert (
        len([k for k in samples if k[0] == "mnist_epoch_duration_seconds_bucket"])
        == len(EPOCH_BUCKETS) + 1
    )

    # the running job trains on, then a resumed run rewinds its history to epoch 1
    jobs.record_epoch(running, EpochRecord(epoch=3, cost=1.0, seconds=0.02, eta=0.1))
    assert _scrape(services, collector)[("mnist_training_epochs_total", ())] == 6
    jobs.reset_progress(running, 1)
    jobs.record_epoch(running, EpochRecord(epoch=2, cost=1.0, seconds=1.5, eta=0.1))
    samples = _scrape(services, collector)
    assert samples[("mnist_training_epochs_total", ())] == 5
    assert samples[("mnist_epoch_duration_seconds_bucket", (("le", "1.0"),))] == 4
    assert samples[("mnist_epoch_duration_seconds_bucket", (("le", "2.5"),))] == 5

    # jobs that leave Redis leave the numbers; a fresh collector agrees with the cached one
    jobs.redis.delete(keys.job(done), keys.job_history(done))
    jobs.redis.zrem(keys.jobs(), str(done))
    cached, fresh = _scrape(services, collector), _scrape(services)
    assert cached[("mnist_training_epochs_total", ())] == 2
    assert cached == fresh


def test_queue_depth_counts_every_priority_list(services: Services, keys: Keys) -> None:
    base = keys.celery_queue(QUEUE)
    services.redis.rpush(base, "a", "b")
    services.redis.rpush(f"{base}\x06\x163", "c")  # kombu's name of the priority-3 list
    assert _scrape(services)[("mnist_queue_depth", ())] == 3


def test_redis_down_is_a_metric_not_an_error(settings: Settings) -> None:
    gone = Services.connect(
        settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"}),
        retries=0,
    )
    samples = _scrape(gone)
    assert samples == {("mnist_redis_up", ()): 0}


def test_requests_are_labelled_by_route_template(client: TestClient) -> None:
    job_id = uuid.uuid4()
    assert client.get(f"/jobs/{job_id}").status_code == 404
    assert client.get(f"/models/{uuid.uuid4()}").status_code == 404
    assert client.get("/etc/passwd").status_code == 404
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = _samples(response.text)

    def requests(route: str, status: str) -> float:
        key = (("method", "GET"), ("route", route), ("status", status))
        return samples.get(("mnist_http_requests_total", key), 0)

    assert requests("/jobs/{job_id}", "404") == 1
    assert requests("/models/{model_id}", "404") == 1
    assert requests("<unmatched>", "404") == 1
    assert not any(str(job_id) in str(labels) or "passwd" in str(labels) for _, labels in samples)
    assert ("process_resident_memory_bytes", ()) in samples
    no_split = (("alias", ""), ("endpoint", "/predict"), ("variant", "primary"))
    assert samples[("mnist_predictions_total", no_split)] == 0


def test_aliases_as_an_info_metric_and_changes_by_source(
    services: Services, registry: ModelRegistry, aliases: Aliases
) -> None:
    a, b = models.register(services.models), models.register(services.models)
    aliases.set_alias("production", a)
    aliases.set_alias("production", b)
    aliases.rollback("production")
    aliases.set_alias("canary", b)
    samples = _scrape(services)
    info = {labels for (name, labels) in samples if name == "mnist_alias_info"}
    assert info == {
        (("alias", "canary"), ("model_id", str(b))),
        (("alias", "production"), ("model_id", str(a))),
    }
    assert samples[("mnist_alias_changes_total", (("alias", "production"), ("source", "api")))] == 2
    assert (
        samples[("mnist_alias_changes_total", (("alias", "production"), ("source", "rollback")))]
        == 1
    )
    assert samples[("mnist_alias_changes_total", (("alias", "canary"), ("source", "api")))] == 1
