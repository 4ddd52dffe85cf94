"""Errors meant for users. The CLI prints them as one line and exits non-zero, without a traceback."""

from __future__ import annotations


class GligenEvalError(Exception):
    """Base class for errors that are the user's to fix (bad input, missing weights, bad config)."""

    exit_code = 2


class InputError(GligenEvalError, ValueError):
    """Bad input data: names the file and the record (annotation id, line number, key)."""

    def __init__(self, message: str, *, path: str | None = None, record: str | None = None):
        where = ""
        if path is not None:
            where = f"{path}"
            if record is not None:
                where += f" [{record}]"
            where += ": "
        elif record is not None:
            where = f"[{record}]: "
        super().__init__(where + message)
        self.path = path
        self.record = record


class ConfigError(GligenEvalError, ValueError):
    """An unknown config key, a wrong type or an invalid value."""


class MissingWeightsError(GligenEvalError, FileNotFoundError):
    """Weights that are not available locally; the message says what to fetch and where to put it."""


class RunDirError(GligenEvalError):
    """An OS error (permission, read-only file system, full disk) while writing a run directory or another
    output file; ``path`` is the file or folder. What was already written stays, so the run can be resumed."""

    def __init__(self, message: str, *, path: str):
        super().__init__(f"{path}: {message}")
        self.path = path


class RunLockedError(GligenEvalError):
    """Another process is writing the run directory ``path`` (the message names the owner)."""

    def __init__(self, message: str, *, path: str):
        super().__init__(message)
        self.path = path
