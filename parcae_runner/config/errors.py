"""The one error type for bad input. The CLI turns it into exit code 2."""

from __future__ import annotations

from typing import Any

# process exit codes of the CLI and the job script: bad input (a ConfigError) is 2
EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


class ConfigError(ValueError):
    """A config value that cannot be used: names the key, the value and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!s}: {allowed}")


class ConfigErrors(ValueError):
    """Several bad values found at once, so a user fixes them in one go."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class ClusterRefused(RuntimeError):
    """The scheduler refused a submission or could not be reached (sbatch's own message): one line, exit code 1."""


class RunStopped(RuntimeError):
    """A run that ended on purpose short of its last step (it diverged): one line, exit code 1, no traceback."""
