"""pixelmill's built-in nodes (installed as ``pixelmill_nodes``), one module per node.

They register through the ``pixelmill.nodes`` entry-point group in pyproject.toml,
exactly as a third-party node package does.
"""
