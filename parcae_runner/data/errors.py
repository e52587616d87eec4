"""The one exception type of the data package."""

from __future__ import annotations


class DataError(ValueError):
    """A data config value that cannot be used; the message names the ``data.*`` key, the value and what is expected."""
