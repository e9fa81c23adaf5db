"""User-facing errors.

Anything a user can cause (bad file, bad field, bad option) raises a `WallwmError` whose message names
what is wrong and where (file, field, frame). The CLI prints that one line and exits non-zero; only bugs
produce a traceback.
"""


class WallwmError(Exception):
    """Base class of every error that the CLI reports as one clear line."""


class DataError(WallwmError, ValueError):
    """A dataset, episode or rig file is malformed."""


class ConfigError(WallwmError, ValueError):
    """A configuration, preset or checkpoint does not fit what it is used with."""


class LinkError(WallwmError):
    """The bridge to the firmware failed (port, protocol, firmware refused)."""
