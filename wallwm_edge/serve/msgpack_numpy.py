"""msgpack with numpy arrays, byte-compatible with openpi_client.msgpack_numpy.

An array travels as {"__ndarray__": True, "data": raw bytes, "dtype": dtype.str, "shape": shape} and a
numpy scalar as {"__npgeneric__": True, "data": item, "dtype": dtype.str}, so openpi's client decodes our
replies and our server decodes its observations. Object, void and complex arrays are refused: they have
no portable byte layout (and unpickling is never an option on a network socket).
"""

from __future__ import annotations

import functools

import msgpack
import numpy as np


def pack_array(obj):
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in ("V", "O", "c"):
        raise ValueError(f"cannot send a numpy array of dtype {obj.dtype} (object, void and complex have no wire format)")
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": np.ascontiguousarray(obj).tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def unpack_array(obj):
    if b"__ndarray__" in obj:
        dtype = np.dtype(obj[b"dtype"])
        if dtype.kind in ("V", "O", "c"):
            raise ValueError(f"refusing a received array of dtype {dtype}")
        # a copy: the frame's bytes are read-only and callers (torch.from_numpy) want writable arrays
        return np.frombuffer(obj[b"data"], dtype=dtype).reshape(obj[b"shape"]).copy()
    if b"__npgeneric__" in obj:
        return np.dtype(obj[b"dtype"]).type(obj[b"data"])
    return obj


Packer = functools.partial(msgpack.Packer, default=pack_array)
packb = functools.partial(msgpack.packb, default=pack_array)
unpackb = functools.partial(msgpack.unpackb, object_hook=unpack_array)
