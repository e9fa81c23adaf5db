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
    """Read a JSON object from `path`; a missing file, bad JSON or a non-object raises `error` naming the file.

    `missing` completes the message for a missing file (say what the file is, or how to make it).
    """
    import json
    from pathlib import Path

    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise error(f"{path}: must hold a JSON object")
    return value
