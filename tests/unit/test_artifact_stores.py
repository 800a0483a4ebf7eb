"""One contract for every artifact store (shared/artifacts/base.py), run against each:
memory, local (a folder) and s3 (a real SeaweedFS on loopback). Then what only the S3
store has: a server that goes away, credentials and buckets that are wrong."""

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shared.artifacts import open_store
from shared.artifacts.base import (
    ArtifactError,
    ArtifactExists,
    ArtifactNotFound,
    ArtifactStore,
    ArtifactTooLarge,
    Prefixed,
    StoreMisconfigured,
    StoreUnavailable,
)
from shared.artifacts.local import TMP_SUFFIX, LocalStore
from shared.artifacts.memory import MemoryStore
from shared.artifacts.s3 import S3Store, translate
from tests.seaweed import Seaweed

WRITERS = 8
BAD_KEYS = ["", "../x", "a/../b", "/abs", ".hidden", "a b", "a\\b", "x" * 300]


@pytest.fixture(scope="module")
def bucket(s3_server: Seaweed) -> str:
    return s3_server.create_bucket()


def s3_store(server: Seaweed, bucket: str, prefix: str = "", **options: Any) -> S3Store:
    return S3Store(
        f"s3://{bucket}/{prefix}",
        endpoint_url=server.endpoint_url,
        session=server.session(),
        **options,
    )


@pytest.fixture(params=["memory", "local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    """An empty store of each kind (s3: a prefix of its own in the module's bucket)."""
    if request.param == "memory":
        return MemoryStore()
    if request.param == "local":
        return LocalStore(tmp_path / "artifacts")
    server: Seaweed = request.getfixturevalue("s3_server")
    return s3_store(server, request.getfixturevalue("bucket"), f"t-{uuid.uuid4().hex[:8]}")


# --- the contract ---------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"x", bytes(range(256)) * 1000])
def test_a_put_object_reads_back_exactly(store: ArtifactStore, data: bytes) -> None:
    store.put("models/m1.npz", data)
    assert store.get("models/m1.npz") == data


def test_a_put_replaces_the_object(store: ArtifactStore) -> None:
    store.put("m.npz", b"old")
    store.put("m.npz", b"new, longer")
    assert store.get("m.npz") == b"new, longer"
    assert store.list() == ["m.npz"]


def test_if_absent_writes_once_and_refuses_the_second(store: ArtifactStore) -> None:
    store.put("m.npz", b"first", if_absent=True)
    with pytest.raises(ArtifactExists):
        store.put("m.npz", b"second", if_absent=True)
    assert store.get("m.npz") == b"first"


def test_if_absent_writers_at_once_exactly_one_wins(store: ArtifactStore) -> None:
    """All writers start together; for S3 each request is also held until every one is
    ready to go out, so all of them are at the server at the same moment."""
    start = threading.Barrier(WRITERS)
    if isinstance(store, S3Store):
        send = threading.Barrier(WRITERS)
        sent = threading.local()

        def hold(**_: object) -> None:
            if not getattr(sent, "once", False):  # not on botocore's own retries
                sent.once = True
                send.wait(timeout=30)

        store.client.meta.events.register("before-send.s3.PutObject", hold)
    outcomes: dict[int, str] = {}

    def write(i: int) -> None:
        start.wait(timeout=30)
        try:
            store.put("race.npz", f"writer {i}".encode(), if_absent=True)
            outcomes[i] = "won"
        except ArtifactExists:
            outcomes[i] = "exists"
        except Exception as exc:
            outcomes[i] = repr(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    winners = [i for i, outcome in outcomes.items() if outcome == "won"]
    assert len(outcomes) == WRITERS
    assert len(winners) == 1, outcomes
    assert sorted(set(outcomes.values())) == ["exists", "won"], outcomes
    assert store.get("race.npz") == f"writer {winners[0]}".encode()


def test_max_bytes_refuses_a_larger_object(store: ArtifactStore) -> None:
    store.put("m.npz", b"x" * 100)
    with pytest.raises(ArtifactTooLarge) as refused:
        store.get("m.npz", max_bytes=99)
    assert (refused.value.size, refused.value.limit) == (100, 99)
    assert store.get("m.npz", max_bytes=100) == b"x" * 100


def test_a_missing_key_is_not_found(store: ArtifactStore) -> None:
    with pytest.raises(ArtifactNotFound):
        store.get("nothing.npz")
    with pytest.raises(LookupError):
        store.get("nothing.npz", max_bytes=10)
    assert not store.exists("nothing.npz")


def test_delete_removes_and_is_idempotent(store: ArtifactStore) -> None:
    store.delete("never-there.npz")
    store.put("m.npz", b"x")
    assert store.exists("m.npz")
    store.delete("m.npz")
    assert not store.exists("m.npz")
    with pytest.raises(ArtifactNotFound):
        store.get("m.npz")
    store.delete("m.npz")
    assert store.list() == []


def test_list_names_complete_objects_under_a_prefix_sorted(
    store: ArtifactStore, tmp_path: Path
) -> None:
    keys = ["m2.npz", "m1.sha256", "m1.npz", "feedback/b.json", "feedback/a.json"]
    keys += ["feedbackx.json", "checkpoints/j1/3.npz"]
    for key in keys:
        store.put(key, key.encode())
    if isinstance(store, LocalStore):  # what a writer caught mid-write leaves behind
        (store.root / "feedback" / f".c.json.x1y2{TMP_SUFFIX}").write_bytes(b"partial")
        (store.root / f".m3.npz.z9{TMP_SUFFIX}").write_bytes(b"partial")
    assert store.list() == sorted(keys)
    assert store.list("feedback/") == ["feedback/a.json", "feedback/b.json"]
    assert store.list("feedback") == ["feedback/a.json", "feedback/b.json", "feedbackx.json"]
    assert store.list("m1.") == ["m1.npz", "m1.sha256"]
    assert store.list("checkpoints/j1/") == ["checkpoints/j1/3.npz"]
    assert store.list("nothing/") == []


def test_a_prefixed_view_keeps_to_its_prefix(store: ArtifactStore) -> None:
    feedback = Prefixed(store, "feedback/")
    feedback.put("a.json", b"a")
    feedback.put("b.json", b"b", if_absent=True)
    store.put("m.npz", b"model")
    assert store.list() == ["feedback/a.json", "feedback/b.json", "m.npz"]
    assert feedback.list() == ["a.json", "b.json"]
    assert feedback.list("b") == ["b.json"]
    assert feedback.get("a.json") == store.get("feedback/a.json") == b"a"
    with pytest.raises(ArtifactExists):
        feedback.put("b.json", b"again", if_absent=True)
    assert feedback.exists("a.json") and not feedback.exists("m.npz")
    feedback.delete("a.json")
    assert store.list() == ["feedback/b.json", "m.npz"]
    with pytest.raises(ValueError):
        Prefixed(store, "feedback")
    with pytest.raises(ValueError):
        feedback.get("../m.npz")


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_outside_the_store_are_refused(store: ArtifactStore, key: str) -> None:
    with pytest.raises(ValueError):
        store.put(key, b"x")
    with pytest.raises(ValueError):
        store.put(key, b"x", if_absent=True)
    with pytest.raises(ValueError):
        store.get(key)
    with pytest.raises(ValueError):
        store.exists(key)
    with pytest.raises(ValueError):
        store.delete(key)
    assert store.list() == []


# --- S3 only ----------------------------------------------------------------------------


def assert_no_address(message: str, server: Seaweed) -> None:
    assert "127.0.0.1" not in message and "http" not in message, message
    assert all(str(port) not in message for port in server.ports.values()), message


def test_objects_live_under_the_uri_prefix_and_without_one(s3_server: Seaweed, bucket: str) -> None:
    prefixed = s3_store(s3_server, bucket, "deploy/a/")
    prefixed.put("m.npz", b"x")
    listing = s3_server.client().list_objects_v2(Bucket=bucket, Prefix="deploy/")
    assert [entry.get("Key") for entry in listing.get("Contents", [])] == ["deploy/a/m.npz"]
    assert prefixed.uri == f"s3://{bucket}/deploy/a/"

    own_bucket = s3_server.create_bucket()
    whole = s3_store(s3_server, own_bucket)
    whole.put("feedback/1.json", b"1")
    assert whole.list() == ["feedback/1.json"]
    assert whole.get("feedback/1.json") == b"1"


def test_list_follows_every_page(s3_server: Seaweed, bucket: str) -> None:
    """Forced: a hook asks the server for two keys per page (1000 by default)."""
    store = s3_store(s3_server, bucket, f"pages-{uuid.uuid4().hex[:8]}/")
    keys = [f"feedback/{i:02}.json" for i in range(7)]
    for key in reversed(keys):
        store.put(key, b"x")
    pages: list[str] = []

    def two_per_page(params: dict[str, object], **_: object) -> None:
        params["MaxKeys"] = 2
        pages.append(str(params.get("ContinuationToken", "first")))

    store.client.meta.events.register("provide-client-params.s3.ListObjectsV2", two_per_page)
    assert store.list("feedback/") == keys
    assert len(pages) == 4


def test_a_stopped_server_is_unavailable_and_back_after_a_restart(
    s3_server: Seaweed, bucket: str
) -> None:
    store = s3_store(s3_server, bucket, "down/", max_attempts=2)
    store.put("m.npz", b"kept")
    with s3_server.stopped():
        calls = [
            lambda: store.get("m.npz"),
            lambda: store.put("n.npz", b"x"),
            lambda: store.put("n.npz", b"x", if_absent=True),
            lambda: store.exists("m.npz"),
            lambda: store.delete("m.npz"),
            lambda: store.list(),
            store.check,
        ]
        for call in calls:
            with pytest.raises(StoreUnavailable) as failed:
                call()
            assert_no_address(str(failed.value), s3_server)
    assert store.get("m.npz") == b"kept"
    store.put("n.npz", b"after", if_absent=True)
    assert store.list() == ["m.npz", "n.npz"]


def test_a_server_that_does_not_answer_times_out_as_unavailable(
    s3_server: Seaweed, bucket: str
) -> None:
    store = s3_store(s3_server, bucket, "frozen/", read_timeout=0.5, max_attempts=2)
    store.put("m.npz", b"x")
    with s3_server.paused(), pytest.raises(StoreUnavailable) as failed:
        store.get("m.npz")
    assert "Timeout" in str(failed.value)
    assert_no_address(str(failed.value), s3_server)
    assert store.get("m.npz") == b"x"


def test_check_passes_with_good_settings(s3_server: Seaweed, bucket: str) -> None:
    s3_store(s3_server, bucket, "any/").check()


@pytest.mark.parametrize(
    ("access_key", "secret_key"),
    [("seaweed-test-key", "not-the-secret"), ("no-such-key", "whatever")],
)
def test_check_refuses_wrong_credentials(
    s3_server: Seaweed, bucket: str, access_key: str, secret_key: str
) -> None:
    store = S3Store(
        f"s3://{bucket}/p",
        endpoint_url=s3_server.endpoint_url,
        session=s3_server.session(access_key, secret_key),
    )
    with pytest.raises(StoreMisconfigured) as refused:
        store.check()
    assert str(refused.value) == "wrong credentials for the object store"
    with pytest.raises(StoreMisconfigured):  # and at any later call too
        store.get("m.npz")


def test_check_refuses_a_missing_bucket(s3_server: Seaweed) -> None:
    store = s3_store(s3_server, "no-such-bucket", "p/")
    with pytest.raises(StoreMisconfigured) as refused:
        store.check()
    assert str(refused.value) == "bucket no-such-bucket does not exist"
    with pytest.raises(StoreMisconfigured):  # a put does not create it
        store.put("m.npz", b"x")
    assert "no-such-bucket" not in s3_server.buckets()


@pytest.fixture
def no_aws_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """boto3's default chain with nothing to find, and no instance metadata lookups
    (which would leave the machine)."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def test_credentials_come_from_the_environment(
    s3_server: Seaweed, bucket: str, no_aws_settings: pytest.MonkeyPatch
) -> None:
    uri = f"s3://{bucket}/env/"
    missing = open_store(uri, endpoint_url=s3_server.endpoint_url, region="us-east-1")
    with pytest.raises(StoreMisconfigured) as refused:
        missing.check()
    assert str(refused.value).startswith("no credentials for the object store")

    no_aws_settings.setenv("AWS_ACCESS_KEY_ID", "seaweed-test-key")
    no_aws_settings.setenv("AWS_SECRET_ACCESS_KEY", "seaweed-test-secret")
    store = open_store(uri, endpoint_url=s3_server.endpoint_url, region="us-east-1")
    assert isinstance(store, S3Store) and store.uri == uri
    store.check()
    store.put("m.npz", b"x")
    assert store.get("m.npz") == b"x"


def test_a_conditional_put_whose_answer_was_lost_is_ours(s3_server: Seaweed, bucket: str) -> None:
    """botocore retries a put whose answer it lost; the retry meets our own object (412).
    Forced: a hook asks for a retry after the first attempt succeeded."""
    store = s3_store(s3_server, bucket, f"lost-{uuid.uuid4().hex[:8]}/")
    tries: list[int] = []

    def lose_first_answer(attempts: int, **_: object) -> float | None:
        tries.append(attempts)
        return 0.0 if attempts == 1 else None

    # a needs-retry handler returns the delay before a retry; the stubs say None
    retry = "needs-retry.s3.PutObject"
    store.client.meta.events.register(retry, lose_first_answer)  # type: ignore[arg-type]
    store.put("m.npz", b"mine", if_absent=True)  # written by attempt 1, 412 on attempt 2
    assert tries == [1, 2]
    assert store.get("m.npz") == b"mine"

    other = s3_store(s3_server, bucket, store.prefix)
    other.client.meta.events.register(retry, lose_first_answer)  # type: ignore[arg-type]
    with pytest.raises(ArtifactExists):  # someone else's bytes: not ours after all
        other.put("m.npz", b"theirs", if_absent=True)
    assert store.get("m.npz") == b"mine"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://", "not a valid bucket name"),
        ("s3://Upper_Case/p", "not a valid bucket name"),
        ("s3://bucket/../up", "not a valid prefix"),
    ],
)
def test_a_bad_uri_is_refused(uri: str, message: str) -> None:
    with pytest.raises(StoreMisconfigured, match=message):
        S3Store(uri, endpoint_url="http://127.0.0.1:9")


def _answer(code: str, status: int) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": "m"},
            "ResponseMetadata": {
                "HTTPStatusCode": status,
                "RequestId": "",
                "HostId": "",
                "HTTPHeaders": {},
                "RetryAttempts": 0,
            },
        },
        "GetObject",
    )


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("InternalError", 500, StoreUnavailable),
        ("ServiceUnavailable", 503, StoreUnavailable),
        ("SlowDown", 503, StoreUnavailable),
        ("RequestTimeout", 400, StoreUnavailable),
        ("InvalidAccessKeyId", 403, StoreMisconfigured),
        ("SignatureDoesNotMatch", 403, StoreMisconfigured),
        ("AccessDenied", 403, StoreMisconfigured),
        ("NoSuchBucket", 404, StoreMisconfigured),
        ("InvalidArgument", 400, ArtifactError),
    ],
)
def test_answers_a_real_server_cannot_be_made_to_give_are_classified(
    code: str, status: int, kind: type[ArtifactError]
) -> None:
    """Answers SeaweedFS gives only when broken (5xx, throttling): the pure mapping."""
    error = translate(_answer(code, status), "bkt")
    assert type(error) is kind
    assert "\n" not in str(error)
