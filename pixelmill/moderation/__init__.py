"""Text moderation against a YAML policy (used by the ``moderate`` node)."""

from .policy import Match, Policy, PolicyError, default_policy_data, load_policy, merge

__all__ = ["Match", "Policy", "PolicyError", "default_policy_data", "load_policy", "merge"]
