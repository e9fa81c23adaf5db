"""The mp4 files of a LeRobot v3 dataset, read and written with PyAV.

Why PyAV and not OpenCV: LeRobot encodes with AV1 (libsvtav1) by default, and the OpenCV wheels carry no
software AV1 decoder (they open the file, then return no frame, which reads like a short video). PyAV's
wheels bundle FFmpeg with dav1d (AV1), h264 and hevc decoders and the encoders LeRobot itself uses
(libsvtav1, h264, hevc), so one library reads what LeRobot writes and writes what LeRobot reads.

Frames are placed by their presentation time (frame.time * fps), the way LeRobot's loader finds them
(episode from_timestamp + frame timestamp), not by counting decoded frames.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from wallwm_edge.errors import ConfigError, DataError

# LeRobot's encoder names (its `vcodec` option) -> the codec name written into info.json ("video.codec")
ENCODERS = {"libsvtav1": "av1", "h264": "h264", "hevc": "hevc"}


def _av():
    try:
        import av
    except ImportError:
        raise ConfigError("LeRobot videos are read and written with PyAV: pip install av") from None
    return av


class VideoCursor:
    """Sequential reader of one mp4 holding consecutive episodes: episodes are read in order, so we
    decode forward and reopen only when asked for an earlier frame."""

    def __init__(self, path: Path, fps: float):
        av = _av()
        if not path.is_file():
            raise DataError(f"{path}: video file missing")
        self.path, self.fps = path, float(fps)
        try:
            self.container = av.open(str(path))
        except av.FFmpegError as e:
            raise DataError(f"{path}: not a readable video file ({e})") from None
        if not self.container.streams.video:
            self.container.close()
            raise DataError(f"{path}: no video stream")
        stream = self.container.streams.video[0]
        ctx = stream.codec_context  # the format's codec (av1), not the decoder picked for it (libdav1d)
        self.codec = ctx.codec.canonical_name if ctx is not None else "unknown"
        self._frames = self.container.decode(stream)
        self._pending: tuple[int, np.ndarray] | None = None  # a decoded frame past the last request
        self.next_index = 0  # frames before this one have been consumed

    def _decode_next(self) -> tuple[int, np.ndarray] | None:
        av = _av()
        if self._pending is not None:
            item, self._pending = self._pending, None
            return item
        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        except av.FFmpegError as e:  # missing decoder, corrupt packet
            raise DataError(f"{self.path}: cannot decode its {self.codec} video stream with this PyAV/FFmpeg build ({e})") from None
        index = int(round(frame.time * self.fps)) if frame.time is not None else self.next_index
        return index, frame.to_ndarray(format="rgb24")

    def read(self, start: int, n: int, where: str) -> np.ndarray:
        """(n, H, W, 3) uint8 RGB frames [start, start + n) of the file."""
        if start < self.next_index:  # an earlier episode: start again from the top
            self.close()
            self.__init__(self.path, self.fps)
        out: list[np.ndarray | None] = [None] * n
        while True:
            item = self._decode_next()
            if item is None:
                break
            index, rgb = item
            self.next_index = index + 1
            if index >= start + n:
                self._pending = item
                break
            if index >= start:
                out[index - start] = rgb
        missing = [start + i for i, f in enumerate(out) if f is None]
        if missing:
            got = n - len(missing)
            raise DataError(f"{self.path}: {where}: the {self.codec} video has {got} of the {n} frames from frame {start} "
                            f"(first missing: frame {missing[0]}, t = {missing[0] / self.fps:.3f} s)")
        return np.stack(out)

    def close(self) -> None:
        self.container.close()


def encode_video(path: Path, frames, fps: float, vcodec: str, size: tuple[int, int]) -> None:
    """Write RGB frames (an iterable of (H, W, 3) uint8) as one mp4 stream, with LeRobot's own encoder
    settings (`encode_video_frames`: yuv420p, GOP 2, CRF 30, SVT-AV1 preset 12)."""
    av = _av()
    if vcodec not in ENCODERS:
        raise ConfigError(f"--vcodec must be one of {sorted(ENCODERS)} (LeRobot's choices), got {vcodec!r}")
    H, W = size
    if H % 2 or W % 2:
        raise DataError(f"{path}: image size {H}x{W}: yuv420p video needs even height and width (re-import with an even --size)")
    options = {"g": "2", "crf": "30"}
    if vcodec == "libsvtav1":
        options["preset"] = "12"
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration at info level
    elif vcodec == "hevc":
        options["x265-params"] = "log-level=error"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(vcodec, rate=Fraction(fps).limit_denominator(1001), options=options)
        stream.pix_fmt, stream.width, stream.height = "yuv420p", W, H
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
