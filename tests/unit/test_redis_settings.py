"""Where Redis is, as each client is told (issue 20's settings pitfalls): the sentinel
list is parsed strictly (an empty entry, a missing port, a trailing separator are
refused with one line), each password goes where it belongs (the data password to the
data servers and in Celery's URL, the sentinels' own only to the sentinels), the
master's name is in both of Celery's transport options, and nothing changes for a
service configured with ``REDIS_URL`` alone. No server is needed: these read the
clients' configuration, and kombu's and Celery's own parsing of it."""

import pytest
from kombu import Connection
from kombu.utils.url import url_to_parts

from shared.config import InvalidSettings, Settings, get_settings
from shared.jobs.queue import make_celery
from shared.redisdb.client import RedisTarget, celery_broker, connect, connect_async

SENTINELS = "10.0.0.5:26379,sentinel-b.example:26380,[fd00::7]:26381"
EXPECTED = [("10.0.0.5", 26379), ("sentinel-b.example", 26380), ("fd00::7", 26381)]
DATA_PASSWORD = "data p@ss/word"  # characters a URL must quote
SENTINEL_PASSWORD = "sentinel-secret"


def sentinel_settings(**changes: object) -> Settings:
    values: dict = {
        "redis_url": "redis://:data%20p%40ss%2Fword@ignored-host:1/3",
        "redis_sentinels": SENTINELS,
        "redis_sentinel_master": "tower",
        "redis_sentinel_password": SENTINEL_PASSWORD,
    }
    return Settings(**{**values, **changes})


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("REDIS_URL", "REDIS_SENTINELS", "REDIS_SENTINEL_PASSWORD", "REDIS_MIN_REPLICAS"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def refusal(environment: pytest.MonkeyPatch, **variables: str) -> str:
    """The one line ``get_settings`` refuses these environment variables with."""
    for name, value in variables.items():
        environment.setenv(name, value)
    get_settings.cache_clear()
    with pytest.raises(InvalidSettings) as refused:
        get_settings()
    line = str(refused.value)
    assert "\n" not in line, line
    return line


def test_a_sentinel_list_is_read_as_addresses(environment: pytest.MonkeyPatch) -> None:
    environment.setenv(
        "REDIS_SENTINELS", " 10.0.0.5:26379 , sentinel-b.example:26380,[fd00::7]:26381"
    )
    assert list(get_settings().redis_sentinels) == EXPECTED
    assert get_settings().redis_sentinel_master == "mymaster"
    assert (get_settings().redis_min_replicas, get_settings().redis_wait_ms) == (0, 500)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("10.0.0.5:26379,", "entry 2 of '10.0.0.5:26379,' is empty"),  # trailing separator
        (",10.0.0.5:26379", "entry 1 of ',10.0.0.5:26379' is empty"),
        ("a:1,,b:2", "entry 2 of 'a:1,,b:2' is empty"),
        ("a:1, ,b:2", "entry 2 of 'a:1, ,b:2' is empty"),
        ("10.0.0.5", "'10.0.0.5' has no port"),
        ("a:1,b", "'b' has no port"),
        ("a:", "'a:' has no port"),
        (":26379", "':26379' has no host"),
        ("a:0", "the port must be a number from 1 to 65535"),
        ("a:65536", "the port must be a number from 1 to 65535"),
        ("a:26379x", "the port must be a number from 1 to 65535"),
        ("a:١٢", "the port must be a number from 1 to 65535"),  # not ASCII digits
        ("a:1;b:2", "'a:1;b' is not a host name or address"),  # kombu's separator, not ours
        ("a b:1", "'a b' is not a host name or address"),
        ("a:1,a:1", "names a sentinel twice"),
    ],
)
def test_a_malformed_sentinel_list_is_refused_with_one_line(
    environment: pytest.MonkeyPatch, value: str, says: str
) -> None:
    line = refusal(environment, REDIS_SENTINELS=value)
    assert line.startswith("REDIS_SENTINELS: ") and says in line, line


def test_an_empty_variable_means_unset(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("REDIS_SENTINELS", "")
    environment.setenv("REDIS_SENTINEL_PASSWORD", "")
    assert get_settings().redis_sentinels == ()
    assert get_settings().redis_sentinel_password is None


def test_other_redis_settings_are_refused_with_one_line(environment: pytest.MonkeyPatch) -> None:
    assert refusal(environment, REDIS_MIN_REPLICAS="-1").startswith("REDIS_MIN_REPLICAS: ")
    environment.delenv("REDIS_MIN_REPLICAS")
    assert refusal(environment, REDIS_WAIT_MS="60000").startswith("REDIS_WAIT_MS: ")
    environment.delenv("REDIS_WAIT_MS")
    tls = refusal(environment, REDIS_SENTINELS="a:1", REDIS_URL="rediss://r:6380/0")
    assert "REDIS_SENTINELS works with a redis:// REDIS_URL" in tls


# --- Celery (kombu): URL, passwords, master name -----------------------------------------


def test_celery_without_sentinels_is_configured_as_before() -> None:
    settings = Settings(redis_url="redis://:pw@redis:6379/0")
    app = make_celery(settings)
    assert app.conf.broker_url == "redis://:pw@redis:6379/0"
    assert app.conf.broker_transport_options == {"global_keyprefix": "mnist:celery:"}
    assert app.conf.result_backend is None
    assert celery_broker(RedisTarget.of(settings)) == ("redis://:pw@redis:6379/0", {})


def test_celery_broker_url_names_each_sentinel_once_and_nothing_else() -> None:
    url, _ = celery_broker(RedisTarget.of(sentinel_settings()))
    assert not url.endswith(";") and ";;" not in url  # kombu reads an empty entry as localhost
    entries = Connection(url).alt
    assert len(entries) == len(EXPECTED) and all(e.startswith("sentinel://") for e in entries)
    parts = [url_to_parts(entry) for entry in entries]
    assert [(p.hostname, p.port) for p in parts] == EXPECTED  # kombu's own parser agrees
    assert {p.path for p in parts} == {"3"}  # REDIS_URL's database


def test_celery_gets_each_password_in_its_place() -> None:
    url, options = celery_broker(RedisTarget.of(sentinel_settings()))
    parts = [url_to_parts(entry) for entry in Connection(url).alt]
    assert {p.password for p in parts} == {DATA_PASSWORD}  # the data servers'
    assert SENTINEL_PASSWORD not in url  # in the URL it would be taken for the data password
    assert options["sentinel_kwargs"]["password"] == SENTINEL_PASSWORD
    assert DATA_PASSWORD not in str(options["sentinel_kwargs"])


def test_celery_has_the_master_name_in_both_transport_options() -> None:
    app = make_celery(sentinel_settings())
    broker, backend = app.conf.broker_transport_options, app.conf.result_backend_transport_options
    for options in (broker, backend):
        assert options["master_name"] == "tower"
        assert options["sentinel_kwargs"]["password"] == SENTINEL_PASSWORD
    assert broker["global_keyprefix"] == "mnist:celery:"
    assert app.conf.broker_url == app.conf.result_backend
    # Celery's own reading of it: the Sentinel result backend, on exactly our sentinels
    backend_impl = app.backend
    assert type(backend_impl).__name__ == "SentinelBackend"
    hosts = backend_impl.connparams["hosts"]
    assert [(h["host"], h["port"]) for h in hosts] == EXPECTED
    assert {h["password"] for h in hosts} == {DATA_PASSWORD}
    assert backend_impl._transport_options["master_name"] == "tower"


# --- redis-py clients ------------------------------------------------------------------


def test_a_client_through_sentinel_sends_each_password_to_its_own_servers() -> None:
    target = RedisTarget.of(sentinel_settings())
    for client in (connect(target), connect_async(target)):
        pool = client.connection_pool
        assert pool.service_name == "tower" and pool.is_master
        assert pool.connection_kwargs["password"] == DATA_PASSWORD
        assert pool.connection_kwargs["db"] == 3
        assert "ignored-host" not in str(pool.connection_kwargs)  # REDIS_URL's host loses
        manager = pool.sentinel_manager
        asked = [s.connection_pool.connection_kwargs for s in manager.sentinels]
        assert [(a["host"], a["port"]) for a in asked] == EXPECTED
        assert {a["password"] for a in asked} == {SENTINEL_PASSWORD}


def test_a_client_without_sentinels_is_redis_url_itself() -> None:
    client = connect("redis://:pw@redis:6380/2")
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == (
        "redis",
        6380,
        2,
        "pw",
    )
