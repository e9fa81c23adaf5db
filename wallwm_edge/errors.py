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


def read_json_object(path, error: type[WallwmError] = DataError, missing: str = "not found") -> dict:
    """Read a JSON object from `path`; a missing file, a folder or FIFO, bad or too deeply nested JSON, or a
    non-object raises `error` naming the file (see `wallwm_edge.validate.load_json`).

    `missing` completes the message for a missing file (say what the file is, or how to make it).
    """
    from wallwm_edge.validate import load_json_object

    return load_json_object(path, error, missing)
