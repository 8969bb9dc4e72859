"""User-facing errors.

Anything a user can cause (bad task name, malformed TSV, bad config value, unreadable
checkpoint, NaN loss) raises a subclass of :class:`UserError`. The CLI turns it into one line
on stderr and exit code 2; no traceback. The message must name the file/field and what was
expected, e.g. ``"CoLA/dev.tsv line 12: expected 4 tab-separated columns, got 3"``.
"""


class UserError(Exception):
    """Base class for errors caused by user input; the CLI exits with code 2."""


class ConfigError(UserError):
    """A bad flag or config value."""


class DataError(UserError):
    """Missing, unreadable or malformed data."""


class CheckpointError(UserError):
    """Missing, unreadable or incompatible checkpoint / pretrained weights."""


class NonFiniteError(UserError):
    """A non-finite loss outside fp16 loss scaling."""
