"""Imports may not be turned against the service (issue 17, point 4): one atomic claim
of the id, the cache keyed by content, order by arrival, over a real Redis."""

import threading
import uuid
from datetime import UTC, datetime

import numpy as np
import pytest
from fastapi.testclient import TestClient

from shared.registry.files import encode
from shared.registry.store import IdTaken
from shared.schemas.jobs import Job
from shared.schemas.params import TrainParams
from shared.services import Services
from shared.sweeps.sweeper import trial_job_id
from tests import models
from tests.unit.test_sweeps import one_choice

OCTETS = {"Content-Type": "application/octet-stream"}


def exported(model_id: uuid.UUID, seed: int = 0, **meta: object) -> bytes:
    card = models.meta(model_id).model_copy(update=meta)
    return encode(models.weights(seed), card)


def test_ten_imports_of_one_id_at_once_make_one_model(services: Services) -> None:
    model_id = uuid.uuid4()
    payloads = [exported(model_id, seed=k) for k in range(10)]  # ten different files, one id
    start = threading.Barrier(10)
    won: list[int] = []
    refused: list[int] = []

    def load(k: int) -> None:
        start.wait()
        try:
            services.models.import_model(payloads[k], "race")
            won.append(k)
        except IdTaken:
            refused.append(k)

    threads = [threading.Thread(target=load, args=(k,)) for k in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(won) == 1 and len(refused) == 9
    info = services.registry.get_model(model_id)
    assert info is not None
    stored = services.models.files.read_verified(model_id, info.sha256)  # card and file agree
    assert stored == payloads[won[0]]


def test_an_import_cannot_take_an_active_job_or_a_future_trial(
    client: TestClient, services: Services
) -> None:
    job = Job(id=uuid.uuid4(), params=TrainParams(epochs=1), epochs=1)
    services.jobs.create(job, max_queued=10)
    taken = client.post("/models", content=exported(job.id), headers=OCTETS)
    assert taken.status_code == 409 and "job" in taken.json()["detail"]
    assert services.registry.get_model(job.id) is None

    # a model whose id a sweep's trial would take later: the trial fails, the model stays
    sweep = services.sweeps.create(one_choice(trials=2, seed=3))
    future = trial_job_id(sweep.id, 1)
    assert client.post("/models", content=exported(future), headers=OCTETS).status_code == 201
    first = services.jobs.get(trial_job_id(sweep.id, 0))
    assert first is not None
    services.jobs.request_cancel(first.id)  # the first trial ends: the next one is due
    services.sweeps.advance(sweep.id)
    record = services.sweeps.store.get(sweep.id)
    assert record is not None and record.trials[1].error == "its job id is taken by a model"
    assert services.jobs.get(future) is None
    assert services.registry.get_model(future) is not None


def test_deleted_then_imported_again_serves_the_new_weights(client: TestClient) -> None:
    model_id = uuid.uuid4()
    pixels = {"pixels": [float(v % 256) for v in range(784)], "model_id": str(model_id)}
    assert client.post("/models", content=exported(model_id, seed=1), headers=OCTETS).is_success
    before = client.post("/predict", json=pixels).json()["probabilities"]  # now cached
    assert client.delete(f"/models/{model_id}").status_code == 204
    assert client.post("/models", content=exported(model_id, seed=2), headers=OCTETS).is_success
    after = client.post("/predict", json=pixels).json()["probabilities"]
    assert not np.allclose(before, after)  # not the old weights from the cache
    expected = client.post("/predict", json={**pixels, "model_id": str(model_id)}).json()[
        "probabilities"
    ]
    assert after == expected


def test_a_file_dated_in_the_future_does_not_jump_the_queue(
    client: TestClient, services: Services
) -> None:
    """Order is when the registry received a model, not what its file says of itself."""
    future = uuid.uuid4()
    far = datetime(9999, 1, 1, tzinfo=UTC)
    assert client.post(
        "/models", content=exported(future, created_at=far), headers=OCTETS
    ).is_success
    newer = models.register(services.models)  # trained after the import
    listed = [m["id"] for m in client.get("/models").json()["items"]]
    assert listed == [str(newer), str(future)]
    assert client.post("/predict", json={"pixels": [0] * 784}).json()["model_id"] == str(newer)
    services.models.apply_retention(1)
    assert services.registry.model_ids() == [newer]  # retention keeps the newest arrival


@pytest.mark.parametrize("created_at", [datetime(9999, 1, 1, tzinfo=UTC)])
def test_a_rebuild_never_orders_a_file_after_now(services: Services, created_at: datetime) -> None:
    model_id = uuid.uuid4()
    services.models.files.write(model_id, exported(model_id, created_at=created_at))
    assert services.models.rebuild() == (1, 0)
    info = services.registry.get_model(model_id)
    assert info is not None and info.registered_at is not None
    assert info.registered_at.year < 9999
