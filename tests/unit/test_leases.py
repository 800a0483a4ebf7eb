"""Job leases against a real (private) redis-server."""

import uuid

from shared.jobs.leases import Leases


def test_lease_is_exclusive_and_only_its_holder_renews_or_releases(leases: Leases) -> None:
    job_id = uuid.uuid4()
    assert leases.acquire(job_id, "a", 5)
    assert not leases.acquire(job_id, "b", 5)
    assert not leases.renew(job_id, "b", 5)
    assert leases.renew(job_id, "a", 5)
    leases.release(job_id, "b")
    assert leases.holder(job_id) == "a"
    leases.release(job_id, "a")
    assert leases.holder(job_id) is None
