"""Secrets come from the environment and are redacted wherever they would be stored or logged."""

from __future__ import annotations

import logging
import os
import threading

REDACTED = "***"
MIN_SECRET_LENGTH = 4  # shorter values cannot be redacted without mangling ordinary text: they are refused


class MissingSecret(KeyError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"secret '{self.name}' is not set: export the environment variable {self.name} before running"


class SecretTooShort(KeyError):
    retryable = False

    def __init__(self, name: str, length: int):
        super().__init__(name)
        self.name = name
        self.length = length

    def __str__(self) -> str:
        return (f"secret '{self.name}' has {self.length} character(s): pixelmill refuses secrets shorter than "
                f"{MIN_SECRET_LENGTH} characters because it cannot redact them from outputs, logs and the run "
                "store without mangling ordinary text")


class Secrets:
    """Read-only view of secrets; remembers each value it handed out so it can be redacted."""

    def __init__(self, environ=None):
        self._environ = os.environ if environ is None else environ
        self._used: set[str] = set()
        self._lock = threading.Lock()

    def get(self, name: str) -> str:
        value = self._environ.get(name)
        if value is None or value == "":
            raise MissingSecret(name)
        if len(value) < MIN_SECRET_LENGTH:
            raise SecretTooShort(name, len(value))
        with self._lock:
            self._used.add(value)
        return value

    def taint(self, value) -> None:
        """Redact ``value`` (every string in it) from now on, like a secret: it was computed from one."""
        found = []
        stack = [value]
        while stack:
            v = stack.pop()
            if isinstance(v, str):
                if len(v) >= MIN_SECRET_LENGTH:  # a short derived value (a length, 'yes') is not redacted
                    found.append(str(v))
            elif isinstance(v, dict):
                stack.extend(v.values())
            elif isinstance(v, (list, tuple)):
                stack.extend(v)
        if found:
            with self._lock:
                self._used.update(found)

    def __getitem__(self, name: str) -> str:
        return self.get(name)

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.get(name)

    def __contains__(self, name: str) -> bool:
        return bool(self._environ.get(name))

    def redact(self, value):
        """Copy of ``value`` (str, list, dict) with every secret handed out so far replaced by ``***``."""
        with self._lock:
            used = sorted(self._used, key=len, reverse=True)
        return _redact(value, used) if used else value


def _redact(value, used):
    if isinstance(value, str):
        value = str(value)  # a str subclass (marked text) becomes plain text
        for secret in used:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: _redact(v, used) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v, used) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Logging filter that redacts secrets from messages and their arguments."""

    def __init__(self, secrets: Secrets):
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.secrets.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
