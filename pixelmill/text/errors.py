"""Errors of text generation; ``retryable = False`` tells the executor that retrying the step cannot help."""

from __future__ import annotations


class TextGenerationError(RuntimeError):
    """A failure with a message that says what to do."""

    retryable = True


class ServerDown(TextGenerationError):
    """Nothing answers at the base URL (connection refused, DNS, timeout)."""


class UnknownModel(TextGenerationError):
    retryable = False


class BadRequest(TextGenerationError):
    retryable = False


class SchemaNotMet(TextGenerationError):
    """The model's answer did not validate against the JSON Schema after every repair attempt."""

    retryable = False
