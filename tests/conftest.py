from __future__ import annotations

import textwrap

import pytest

from pixelmill.registry import Registry
from pixelmill.runtime import Runtime
from pixelmill.settings import Settings

from .pg import PgCluster
from .testnodes import TEST_NODES

# Run-store backends. A test module sets ``STORE_BACKENDS = ("sqlite", "postgresql")`` to run every test that
# uses the ``db_url`` fixture (directly or through ``runtime``) against both; elsewhere only SQLite runs.


def pytest_generate_tests(metafunc):
    if "db_url" in metafunc.fixturenames:
        backends = getattr(metafunc.module, "STORE_BACKENDS", ("sqlite",))
        metafunc.parametrize("db_url", backends, indirect=True)


@pytest.fixture(scope="session")
def pg_cluster():
    cluster, why = PgCluster.start()
    if cluster is None:
        pytest.skip(why)
    yield cluster
    cluster.stop()


@pytest.fixture
def db_url(request, tmp_path) -> str:
    """A fresh, empty run-store database: SQLite in tmp_path, or a new database in the throwaway cluster."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_cluster").create_database()
    return f"sqlite:///{tmp_path / 'home' / 'pixelmill.db'}"


@pytest.fixture
def registry() -> Registry:
    """Entry-point nodes (the built-ins) plus the small test nodes."""
    reg = Registry.from_entry_points()
    for cls in TEST_NODES:
        reg.register(cls)
    return reg


@pytest.fixture
def runtime(tmp_path, registry, monkeypatch, db_url):
    monkeypatch.setenv("PIXELMILL_HOME", str(tmp_path / "home"))
    rt = Runtime.create(Settings.from_env(home=tmp_path / "home", db_url=db_url), registry=registry)
    yield rt
    rt.close()


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")
