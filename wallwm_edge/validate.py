"""Validation where data enters: the checks every reader of an outside file shares.

Every file a user hands us (dataset.json, an episode's meta.json and .npy arrays, a rig file, a
checkpoint's header, an export sidecar) passes through here before any work starts, so a bad file gives
ONE line naming the file and field, never a traceback, a hang or a half-written output.

- `regular_file(path)`: refuses folders, FIFOs, devices and sockets (opening a FIFO blocks for ever).
- `load_json(path)`: a regular file of bounded size, UTF-8 JSON, nested at most MAX_DEPTH deep.
- Specs (`integer`, `number`, `string`, `array`, `obj`, ...): small composable checkers of decoded
  JSON; `problems(value, spec)` lists every (field path, message), `require(...)` raises the first.
  Numbers are finite unless a spec says otherwise; integers are JSON integers (49, not 49.0 or "49").
- `npy_header(path)`: shape, dtype and data offset of an .npy file, with its size on disk checked
  against the header, so a file declaring 240 GB is refused before anything is allocated.
- `clip(text)`: user text made safe for a one-line message (control characters escaped, long text cut).

numpy/json only: the torch-free runtime validates its inputs here too.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any, Callable

import numpy as np

from wallwm_edge.errors import DataError, WallwmError

MAX_JSON_BYTES = 256 << 20  # a sidecar with a large caption table is ~1 MB; meta.json a few kB
MAX_DEPTH = 64  # the deepest file we write nests ~6 levels
CLIP = 200  # characters of user text shown in one message

# --- text ---------------------------------------------------------------------------------------------


def clip(value: Any, limit: int = CLIP) -> str:
    """`value` as printable one-line text: non-printable characters (control, line separators, format
    characters) escaped as \\xNN / \\uNNNN, and text beyond `limit` characters cut with a count."""
    s = value if isinstance(value, str) else repr(value)
    n = len(s)
    if n > limit:
        s = s[:limit]
    s = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in s)
    return s + (f"... ({n} characters)" if n > limit else "")


def quote(value: Any, limit: int = CLIP) -> str:
    """Like repr() of a string (quotes, escapes), but cut at `limit` characters."""
    return f"'{clip(value, limit)}'" if isinstance(value, str) else clip(value, limit)


def one_line(message: str, limit: int = 2000) -> str:
    """An error message made safe to print as one terminal line (newlines and escapes included)."""
    return clip(str(message), limit)


def describe(v: Any) -> str:
    """A short description of a decoded JSON value for 'got ...' in a message."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return f"the string {quote(v, 60)}"
    if isinstance(v, list):
        return f"a list of {len(v)}"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


# --- files --------------------------------------------------------------------------------------------


def regular_file(path: str | os.PathLike, error: type[WallwmError] = DataError, missing: str = "missing") -> int:
    """Size of `path` if it is a regular file; else `error` naming it (missing, a folder, a FIFO, ...).

    Never opens the file: opening a FIFO for reading blocks until a writer appears."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except OSError as e:
        raise error(f"{path}: cannot be read ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{path}: is a folder, expected a file")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device"
        raise error(f"{path}: is {kind}, not a regular file")
    return st.st_size


def _depth_ok(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            if d > limit:
                return False
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return True


def load_json(path: str | os.PathLike, error: type[WallwmError] = DataError, missing: str = "missing",
              max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Decoded JSON of the regular file `path`; `error` naming the file if it is missing, not a regular
    file, larger than `max_bytes`, not UTF-8 JSON, or nested deeper than MAX_DEPTH."""
    size = regular_file(path, error, missing)
    if size > max_bytes:
        raise error(f"{path}: {size} bytes, more than the {max_bytes} a JSON file here may have")
    return parse_json(Path(path).read_bytes(), str(path), error)


def parse_json(text: str | bytes, where: str, error: type[WallwmError] = DataError) -> Any:
    try:
        value = json.loads(text)
    except RecursionError:
        raise error(f"{where}: JSON nested too deeply (at most {MAX_DEPTH} levels)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{where}: not valid JSON ({clip(str(e), 120)})") from None
    if not _depth_ok(value, MAX_DEPTH):
        raise error(f"{where}: JSON nested too deeply (at most {MAX_DEPTH} levels)")
    return value


def load_json_object(path: str | os.PathLike, error: type[WallwmError] = DataError, missing: str = "missing") -> dict:
    value = load_json(path, error, missing)
    if not isinstance(value, dict):
        raise error(f"{path}: must hold a JSON object, got {describe(value)}")
    return value


def npy_header(path: str | os.PathLike, error: type[WallwmError] = DataError) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of the .npy file `path`, read from its header alone; `error` if it is
    not a regular file, has no readable header, holds objects or Fortran order, or its size on disk does
    not match what the header declares (truncated, trailing bytes, or a header claiming terabytes)."""
    shape, dtype, offset, size = read_npy_header(path, error)
    want = offset + math.prod(int(n) for n in shape) * dtype.itemsize
    if size != want:
        what = "truncated" if size < want else "has trailing bytes"
        raise error(f"{path}: {what}: {size} bytes on disk, its header declares shape {list(shape)} {dtype} = {want} bytes")
    return shape, dtype, offset


def read_npy_header(path: str | os.PathLike, error: type[WallwmError] = DataError) -> tuple[tuple[int, ...], np.dtype, int, int]:
    """(shape, dtype, data offset, size on disk) from the header alone, without the size check (callers
    that report a size mismatch in their own words, e.g. `data check` per frame)."""
    size = regular_file(path, error)
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as e:
        raise error(f"{path}: not a readable .npy header ({clip(str(e), 120)})") from None
    if dtype.hasobject:
        raise error(f"{path}: holds Python objects (dtype {dtype}); only plain numeric arrays are read")
    if fortran:
        raise error(f"{path}: Fortran-ordered arrays are not supported")
    return tuple(int(n) for n in shape), dtype, offset, size


# --- specs of decoded JSON ----------------------------------------------------------------------------

Spec = Callable[[Any, str], list]  # (value, field path) -> [(field path, message), ...]


def _at(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    key = clip(str(key), 60)
    return f"{path}.{key}" if path else key


def _range_text(lo, hi) -> str:
    return f">= {lo}" if hi is None else f"<= {hi}" if lo is None else f"in [{lo}, {hi}]"


def integer(lo: int | None = None, hi: int | None = None) -> Spec:
    def check(v, at):
        if isinstance(v, bool) or not isinstance(v, int):
            return [(at, f"must be an integer, got {describe(v)}")]
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            return [(at, f"must be {_range_text(lo, hi)}, got {v}")]
        return []
    return check


def number(lo: float | None = None, hi: float | None = None, positive: bool = False) -> Spec:
    """A finite JSON number (ints accepted), optionally > 0 and within [lo, hi]."""
    def check(v, at):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return [(at, f"must be a number, got {describe(v)}")]
        if not math.isfinite(v):
            return [(at, f"must be a finite number, got {describe(v)}")]
        if positive and v <= 0:
            return [(at, f"must be > 0, got {describe(v)}")]
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            return [(at, f"must be {_range_text(lo, hi)}, got {describe(v)}")]
        return []
    return check


def boolean() -> Spec:
    return lambda v, at: [] if isinstance(v, bool) else [(at, f"must be true or false, got {describe(v)}")]


def string(nonempty: bool = False, max_len: int | None = None, choices: tuple | None = None) -> Spec:
    def check(v, at):
        if not isinstance(v, str):
            return [(at, f"must be a string, got {describe(v)}")]
        if nonempty and not v.strip():
            return [(at, "must be a non-empty string")]
        if max_len is not None and len(v) > max_len:
            return [(at, f"must be at most {max_len} characters, got {len(v)}")]
        if choices is not None and v not in choices:
            return [(at, f"must be one of {list(choices)}, got {quote(v, 60)}")]
        return []
    return check


def name_id(v, at):
    """An identifier that becomes a file or folder name: non-empty, printable, no path separators."""
    if not isinstance(v, str):
        return [(at, f"must be a string, got {describe(v)}")]
    if not v or v.startswith(".") or "/" in v or "\\" in v or not v.isprintable() or len(v) > 255:
        return [(at, f"must be a non-empty name without '/', a leading '.' or control characters, got {quote(v, 60)}")]
    return []


def array(item: Spec | None = None, length: int | None = None, min_len: int = 0, max_len: int | None = None,
          unique: bool = False) -> Spec:
    def check(v, at):
        if not isinstance(v, list):
            return [(at, f"must be a list, got {describe(v)}")]
        if length is not None and len(v) != length:
            return [(at, f"must have {length} entries, got {len(v)}")]
        if len(v) < min_len:
            return [(at, f"must have at least {min_len} entries, got {len(v)}")]
        if max_len is not None and len(v) > max_len:
            return [(at, f"must have at most {max_len} entries, got {len(v)}")]
        out = []
        if item is not None:
            for i, x in enumerate(v):
                out += item(x, _at(at, i))
                if len(out) >= 20:  # enough to act on; a million bad rows would make a million lines
                    break
        if unique and not out and len({json.dumps(x, sort_keys=True) for x in v}) != len(v):
            out.append((at, "entries must be unique"))
        return out
    return check


def matrix(rows: int, cols: int) -> Spec:
    return array(array(number(), length=cols), length=rows)


def obj(fields: dict[str, Spec] | None = None, required: tuple[str, ...] = (), values: Spec | None = None) -> Spec:
    """A JSON object: `required` keys present, each key of `fields` (if present) checked by its spec,
    every value checked by `values` if given. A null optional field counts as absent only where its
    spec is `optional(...)`."""
    def check(v, at):
        if not isinstance(v, dict):
            return [(at, f"must be an object, got {describe(v)}")]
        out = [(_at(at, k), "is missing") for k in required if k not in v]
        for k, spec in (fields or {}).items():
            if k in v:
                out += spec(v[k], _at(at, k))
        if values is not None:
            for k, x in v.items():
                if not isinstance(k, str) or not k.isprintable():
                    out.append((_at(at, k), "key must be printable text"))
                out += values(x, _at(at, k))
                if len(out) >= 20:
                    break
        return out
    return check


def optional(spec: Spec) -> Spec:
    return lambda v, at: [] if v is None else spec(v, at)


def problems(value: Any, spec: Spec, at: str = "") -> list[tuple[str, str]]:
    return spec(value, at)


def message(at: str, msg: str) -> str:
    return f"field '{at}' {msg}" if at else msg


def require(value: Any, spec: Spec, where: str, error: type[WallwmError] = DataError, at: str = ""):
    """`value` if it passes `spec`; else `error` "<where>field '<path>' <message>" for the first problem
    (`where` ends with ': ' or is empty)."""
    found = spec(value, at)
    if found:
        path, msg = found[0]
        more = f" (+{len(found) - 1} more problem(s))" if len(found) > 1 else ""
        raise error(f"{where}{message(path, msg)}{more}")
    return value
