"""Test-only entry point: ``pixelmill worker`` with the test node types added.

Usage: python tests/worker_test_app.py WORKFLOWS_DIR QUEUES
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from servernodes import NODES  # noqa: E402

from pixelmill.cli.worker import start_worker  # noqa: E402
from pixelmill.registry import Registry  # noqa: E402

if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    registry = Registry.from_entry_points()
    for cls in NODES:
        registry.register(cls)
    start_worker(registry, Path(sys.argv[1]), sys.argv[2], "cpu", None)
