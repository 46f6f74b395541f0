from __future__ import annotations

import textwrap

import pytest

from pixelmill.registry import Registry
from pixelmill.runtime import Runtime
from pixelmill.settings import Settings

from .testnodes import TEST_NODES


@pytest.fixture
def registry() -> Registry:
    """Entry-point nodes (the built-ins) plus the small test nodes."""
    reg = Registry.from_entry_points()
    for cls in TEST_NODES:
        reg.register(cls)
    return reg


@pytest.fixture
def runtime(tmp_path, registry, monkeypatch):
    monkeypatch.setenv("PIXELMILL_HOME", str(tmp_path / "home"))
    rt = Runtime.create(Settings.from_env(home=tmp_path / "home"), registry=registry)
    yield rt
    rt.close()


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")
