"""Celery routing: a workflow's queue (its own ``queue:``, ``gpu`` for GPU steps, else ``default``) and the
optional queue per model (PIXELMILL_MODEL_QUEUES) for workflows whose GPU steps all use one model."""

from __future__ import annotations

import pytest

from pixelmill.loader import load_text
from pixelmill.node import Model, Node
from pixelmill.registry import Registry
from pixelmill.server.config import ServerConfig
from pixelmill.workers.routing import model_queue, queue_for


class PaintConfig(Model):
    model: str = "embedded"


class Paint(Node):
    """Stands in for a GPU node with a model in its config."""

    type = "t_paint"
    uses_gpu = True
    Config = PaintConfig

    def run(self, inputs, ctx):
        return self.Outputs()


class Note(Node):
    """A CPU node."""

    type = "t_note"

    def run(self, inputs, ctx):
        return self.Outputs()


@pytest.fixture
def registry():
    reg = Registry()
    reg.register(Paint)
    reg.register(Note)
    return reg


def _load(registry, steps: str, queue: str = ""):
    text = f"name: w\n{queue}steps:\n{steps}"
    return load_text(text, "w.yaml", registry, environ={})


def test_queue_for(registry):
    cpu = _load(registry, "  - {id: n, node: t_note}\n")
    one = _load(registry, "  - {id: a, node: t_paint, config: {model: stabilityai/sdxl-turbo}}\n"
                          "  - {id: b, node: t_paint, config: {model: stabilityai/sdxl-turbo}}\n"
                          "  - {id: n, node: t_note}\n")
    two = _load(registry, "  - {id: a, node: t_paint, config: {model: x}}\n  - {id: b, node: t_paint}\n")
    named = _load(registry, "  - {id: a, node: t_paint}\n", queue="queue: big\n")
    assert [queue_for(w) for w in (cpu, one, two, named)] == ["default", "gpu", "gpu", "big"]
    assert [queue_for(w, per_model=True) for w in (cpu, one, two, named)] == \
        ["default", "gpu.stabilityai-sdxl-turbo", "gpu", "big"]  # two models: no one worker holds both


def test_model_queue_names():
    assert model_queue("embedded") == "gpu.embedded"
    assert model_queue("Org/Model_v1.5") == "gpu.org-model_v1.5"
    assert model_queue("/srv/models/my sd/") == "gpu.my-sd"  # a folder: its name
    assert model_queue("~/m/tiny") == "gpu.tiny"


def test_model_queues_setting():
    assert ServerConfig.from_env(environ={}).model_queues is False
    assert ServerConfig.from_env(environ={"PIXELMILL_MODEL_QUEUES": "1"}).model_queues is True
