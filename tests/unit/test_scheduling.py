"""The suite's own scheduling (tests/conftest.py): the modules that touch the machine's
network exist and share one xdist scope; every other module is a scope of its own."""

from tests.conftest import ROOT_NETWORK, ROOT_NETWORK_MODULES, scope_of
from tests.procs import REPO


def test_the_listed_modules_exist() -> None:
    missing = [m for m in ROOT_NETWORK_MODULES if not (REPO / m).is_file()]
    assert not missing, missing
    assert {"tests/e2e/test_browser.py", "tests/e2e/test_hosts.py"} <= ROOT_NETWORK_MODULES


def test_root_network_modules_share_one_scope_and_the_rest_are_by_module() -> None:
    for module in ROOT_NETWORK_MODULES:
        assert scope_of(f"{module}::test_x[a-b]") == ROOT_NETWORK
    assert scope_of("tests/e2e/test_service.py::test_x") == "tests/e2e/test_service.py"
    assert scope_of("tests/unit/test_mlp.py::test_y[0.1::2]") == "tests/unit/test_mlp.py"
