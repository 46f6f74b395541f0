"""Text generation: any OpenAI-compatible chat server, or a local transformers causal LM.

Stands alone: nodes use it, the engine never imports it.
"""

from .errors import TextGenerationError
from .result import Completion, Usage

__all__ = ["Completion", "TextGenerationError", "Usage"]
