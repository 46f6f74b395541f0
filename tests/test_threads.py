"""CPU thread count for model calls: set once per process, never oversubscribed by default."""

from __future__ import annotations

import os

import torch

from pixelmill.models.manager import configure_cpu_threads


def test_thread_setting_and_default():
    before = torch.get_num_threads()
    try:
        assert configure_cpu_threads({"PIXELMILL_TORCH_THREADS": "1"}) == 1 and torch.get_num_threads() == 1
        assert configure_cpu_threads({}) == max(1, (os.cpu_count() or 2) // 2)
        assert configure_cpu_threads({"OMP_NUM_THREADS": "3", "PIXELMILL_TORCH_THREADS": "1"}) is None
        assert configure_cpu_threads({"PIXELMILL_TORCH_THREADS": "lots"}) == max(1, (os.cpu_count() or 2) // 2)
    finally:
        torch.set_num_threads(before)
