"""A fine-tune submitted in the same instant as the deletion of its parent: one of the
two always sees the other, whichever commits first (issue 17, point 7). The instant is
forced: each test runs the other operation inside the first one's critical section."""

import uuid

import pytest

from shared.jobs.store import JobStore
from shared.registry.store import ModelBroken, ModelInUse
from shared.schemas.jobs import JobRequest, JobStatus
from shared.schemas.models import PromoteOption
from shared.services import Services
from shared.submission import Invalid
from tests.models import register


class Broker:
    """Stands in for Celery: the job's message is remembered, not sent."""

    def __init__(self) -> None:
        self.sent: list[uuid.UUID] = []

    def send(self, job_id: uuid.UUID) -> None:
        self.sent.append(job_id)


@pytest.fixture
def quiet(services: Services, monkeypatch: pytest.MonkeyPatch) -> Broker:
    broker = Broker()
    monkeypatch.setattr(services.submit, "queue", broker)
    return broker


def fine_tune(parent: uuid.UUID) -> JobRequest:
    return JobRequest.model_validate({"init_model": str(parent), "epochs": 1})


def test_a_submission_inside_the_deletion_makes_the_deletion_refuse(
    services: Services, quiet: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deletion has read the active jobs (none starts from the model) when the
    fine-tune is recorded: its transaction must not commit on what it read."""
    parent = register(services.models)
    read_active = JobStore.active_in
    submitted: list[uuid.UUID] = []

    def active_then_submit(self: JobStore, pipe: object) -> object:
        jobs = read_active(self, pipe)  # type: ignore[arg-type]
        if not submitted:  # the first pass only: the instant between its read and EXEC
            submitted.append(services.submit.submit(fine_tune(parent)).job_id)
        return jobs

    monkeypatch.setattr(JobStore, "active_in", active_then_submit)
    with pytest.raises(ModelInUse, match=str(submitted[0]) if submitted else "start from"):
        services.models.delete(parent)
    (child,) = submitted
    assert services.registry.get_model(parent) is not None  # the parent stays, served
    assert services.models.files.exists(parent)
    job = services.jobs.get(child)
    assert job is not None and job.status is JobStatus.queued and job.init_model_id == parent


def test_a_deletion_inside_the_submission_makes_the_submission_refuse(
    services: Services, quiet: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The submission has resolved the parent (it exists) when the parent is deleted:
    the job store's script must refuse the job, not queue one that fails later."""
    parent = register(services.models)
    create = JobStore.create

    def delete_then_create(self: JobStore, job: object, *args: object) -> object:
        services.models.delete(parent)  # the instant between the check and the record
        return create(self, job, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(JobStore, "create", delete_then_create)
    with pytest.raises(Invalid) as refused:
        services.submit.submit(fine_tune(parent))
    assert refused.value.errors[0]["loc"] == ("body", "init_model")
    assert services.jobs.active() == [] and quiet.sent == []
    assert services.registry.get_model(parent) is None


def test_no_path_moves_an_alias_onto_a_broken_model(services: Services) -> None:
    """PUT, rollback and the gate (a sweep's or a job's) all refuse a model marked broken."""
    aliases = services.models.aliases
    good, bad = register(services.models), register(services.models)
    aliases.set_alias("production", bad)
    aliases.set_alias("production", good)
    services.registry.mark_broken(bad, "integrity check failed")
    with pytest.raises(ModelBroken):
        aliases.set_alias("staging", bad)
    with pytest.raises(ModelBroken):
        aliases.rollback("production")  # its earlier target is the broken one
    info = services.registry.get_model(bad)
    assert info is not None
    gate = aliases.promote_if_better(info, PromoteOption(alias="canary"), 1.0)
    assert not gate.promoted and "cannot serve" in gate.reason
    assert aliases.get_alias("canary") is None
    assert aliases.get_alias("production").model_id == good  # type: ignore[union-attr]
