"""Test-only entry point: the real server (waitress, workers, scheduler) with the test node types added.

Usage: python tests/serve_test_app.py WORKFLOWS_DIR   (listens on a free loopback port and prints its URL)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from servernodes import NODES  # noqa: E402

from pixelmill.registry import Registry  # noqa: E402
from pixelmill.server.app import create_app  # noqa: E402
from pixelmill.server.config import ServerConfig  # noqa: E402
from pixelmill.server.runner import serve  # noqa: E402


def main() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    registry = Registry.from_entry_points()
    for cls in NODES:
        registry.register(cls)
    app = create_app(ServerConfig.from_env(workflows_dir=Path(sys.argv[1])), registry=registry)
    serve(app, "127.0.0.1", int(sys.argv[2]) if len(sys.argv) > 2 else 0)


if __name__ == "__main__":
    main()
