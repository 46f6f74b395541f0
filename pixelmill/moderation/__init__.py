"""Moderation: a YAML rules policy, a semantic layer, an optional guard model and image checks.

``load_policy`` compiles the rules; ``Gate`` combines the layers (see ``gate.py``). The semantic layer
(``embedding.py`` + ``semantic.py``) and the guard client (``guard.py``) load lazily.
"""

from .gate import Decision, Gate, GateSettings
from .policy import Match, Policy, PolicyError, default_policy_data, load_policy, merge

__all__ = ["Decision", "Gate", "GateSettings", "Match", "Policy", "PolicyError", "default_policy_data",
           "load_policy", "merge"]
