"""The package's error hierarchy.

Every error a user can meet derives from :class:`AnalyzerError` and carries a message
that says what failed, the value involved, and what to do about it.
"""

from __future__ import annotations


class AnalyzerError(Exception):
    """Base class of every error analyzer-widgets raises on purpose."""


class ConfigError(AnalyzerError, ValueError):
    """A setting has a bad value. ``field`` names the setting, ``value`` is what was given."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}={value!r}: {reason}")


class RepositoryError(AnalyzerError):
    """The model repository is missing, empty, or does not hold a requested model."""


class EnvironmentCheckError(AnalyzerError):
    """The machine lacks something the server or its models need (binary, stub, numpy 1.x)."""


class ServerError(AnalyzerError):
    """The Triton server failed: it would not start, died, or refused a request."""


class ServerStartError(ServerError):
    """The server did not become ready. ``log_tail`` holds the end of its log."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        self.log_tail = log_tail
        text = message
        if log_tail:
            text += "\n--- last lines of the server log ---\n" + log_tail.rstrip()
        super().__init__(text)


class PortInUseError(ServerError):
    """A port the user asked for is already taken."""

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.port = port
        super().__init__(
            f"{name}={port}: port {port} on this machine is already in use; "
            f"choose another port, or leave {name} unset to pick a free one"
        )


class ModelLoadError(ServerError):
    """The server refused to load a model; the message is the server's."""

    def __init__(self, model: str, server_message: str) -> None:
        self.model = model
        self.server_message = server_message
        super().__init__(f"model {model!r} failed to load: {server_message}")


class SweepCancelled(AnalyzerError):
    """The sweep was stopped by the user (Ctrl-C, Stop); finished rows are kept."""


class ResumeError(AnalyzerError):
    """Results in the export directory cannot be resumed: the spec, the models' files, the
    server or the GPUs changed, or what they were measured with is unknown or damaged."""
