"""pixelmill: YAML workflows for AI image content pipelines."""

__version__ = "0.1.0"
