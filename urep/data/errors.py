"""Errors raised by the data layer.

Both subclass `ValueError` so callers that only know "bad input" can still catch them, and both carry a
message that names the offending file or folder and what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence


class ImageReadError(ValueError):
    """An image or mask file is missing, corrupt, truncated, not an image, or of an unsupported kind."""


class DatasetError(ValueError):
    """A dataset folder or manifest does not have the expected layout or content.

    Args:
        message: what was expected and what was found.
        problems: every `(path, reason)` found, when the error sums up several files (e.g. images without
            their masks); the message lists the first of them.
    """

    def __init__(self, message: str, problems: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)
