"""The reference firmware from the host: build it, run the simulator on a pty, or run it in-process.

- `find_fw_sim()`: the `wallwm-fw-sim` executable. In a source checkout it is compiled with `cc` into a
  cache keyed by the hash of the C sources (so it is never stale); otherwise the one installed with the
  wheel (`wallwm-fw-sim` on PATH) is used. WALLWM_FW_SIM overrides both.
- `SimulatedArm`: starts the simulator on a fresh pty and opens an ArmLink to it (the runtime demo).
- `InProcessFirmware`: the same C library loaded with ctypes, served over the loopback transport or
  python-can's virtual bus (where the simulator process cannot go).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import signal
import subprocess
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

from wallwm_edge.errors import LinkError

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["include/wwfw.h", "src/wire.c", "src/fw.c", "src/interp.c"]
CFLAGS = ["-std=c99", "-O2", "-Wall", "-ffp-contract=off"]  # no FMA contraction: bit-equal with the host


def source_dir() -> Path | None:
    d = Path(os.environ.get("WALLWM_FIRMWARE_SRC", REPO_ROOT / "firmware_bridge"))
    return d if (d / "src" / "fw.c").is_file() else None


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wallwm-edge" / "firmware"


def build(kind: str = "sim", out_dir: Path | None = None) -> Path:
    """Compile the simulator ("sim") or the shared library ("lib") from the source tree with cc."""
    src = source_dir()
    if src is None:
        raise LinkError("firmware sources not found (firmware_bridge/): install the wheel, which ships wallwm-fw-sim")
    files = SOURCES + (["sim/main.c"] if kind == "sim" else [])
    h = hashlib.sha256((" ".join(CFLAGS) + kind).encode())
    for f in files:
        h.update((src / f).read_bytes())
    out_dir = Path(out_dir) if out_dir else _cache_dir() / h.hexdigest()[:16]
    out = out_dir / ("wallwm-fw-sim" if kind == "sim" else "libwwfw.so")
    if out.is_file():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    cc = os.environ.get("CC", "cc")
    cmd = [cc, *CFLAGS, "-I", str(src / "include"), *[str(src / f) for f in files if f.endswith(".c")], "-lm"]
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    cmd += ["-o", str(tmp)] if kind == "sim" else ["-shared", "-fPIC", "-o", str(tmp)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise LinkError(f"C compiler {cc!r} not found: install build-essential, or the wheel with wallwm-fw-sim") from None
    if r.returncode != 0:
        raise LinkError(f"building the firmware {kind} failed:\n{r.stderr[-2000:]}")
    os.replace(tmp, out)
    return out


def find_fw_sim() -> Path:
    env = os.environ.get("WALLWM_FW_SIM")
    if env:
        return Path(env)
    if source_dir() is not None and shutil.which(os.environ.get("CC", "cc")):
        return build("sim")
    # The wheel installs it beside `wallwm-edge` in the interpreter's scripts folder, which need not be
    # on PATH (a venv that is not activated).
    scripts = sysconfig.get_path("scripts")
    installed = shutil.which("wallwm-fw-sim") or shutil.which("wallwm-fw-sim", path=scripts)
    if installed:
        return Path(installed)
    raise LinkError("wallwm-fw-sim not found: `pip install .` builds it, or run from a source checkout with cc")


class SimulatedFirmware:
    """`wallwm-fw-sim --pty` as a child process: .port is the serial URL, .log the event log."""

    def __init__(self, joints: int = 6, *, control_rate: int = 500, feedback_rate: int = 50, hold_ms: int = 250,
                 estop_ms: int = 1000, log: Path | None = None, extra: list[str] | None = None,
                 exe: Path | None = None):
        self.exe = Path(exe) if exe else find_fw_sim()
        self._tmp = None
        if log is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="wallwm-fw-")
            log = Path(self._tmp.name) / "fw.log"
        self.log = Path(log)
        cmd = [str(self.exe), "--pty", "--joints", str(joints), "--control-rate", str(control_rate),
               "--feedback-rate", str(feedback_rate), "--hold-ms", str(hold_ms), "--estop-ms", str(estop_ms),
               "--log", str(self.log), "--exit-with-parent", *(extra or [])]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("PTY "):
            self.proc.kill()
            raise LinkError(f"wallwm-fw-sim did not start: {line!r} {self.proc.stderr.read()[-500:]}")
        self.path = line[4:]
        self.port = f"serial:{self.path}"

    def reboot(self) -> None:
        """Restart the firmware (new boot id, queue lost) without moving the arm: a reset mid-chunk."""
        self.proc.send_signal(signal.SIGUSR1)

    def events(self) -> list[tuple[int, str, dict]]:
        """The firmware's event log: (time_ms, event, {key: value})."""
        out = []
        for line in self.log.read_text().splitlines() if self.log.exists() else []:
            parts = line.split()
            if len(parts) >= 2:
                kv = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
                out.append((int(parts[0]), parts[1], kv))
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()
        if self._tmp:
            self._tmp.cleanup()
            self._tmp = None


class SimulatedArm:
    """A simulated firmware on a fresh pty and a connected ArmLink: `with SimulatedArm() as arm: arm.link...`"""

    def __init__(self, joints: int = 6, config=None, **fw_kw):
        from wallwm_edge.bridge.link import ArmLink

        self.fw = SimulatedFirmware(joints, **fw_kw)
        try:
            self.link = ArmLink.open(self.fw.port, config)
        except Exception:
            self.fw.stop()
            raise

    def close(self) -> None:
        self.link.close()
        self.fw.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_simulated_link(joints: int = 6, config=None, **fw_kw) -> SimulatedArm:
    """The helper the runtime demo uses: returns a SimulatedArm (.link is the ArmLink, .fw the simulator)."""
    return SimulatedArm(joints, config, **fw_kw)


# ---- the C firmware in-process (ctypes) ----------------------------------------------------------------
_LOGFN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p)


class _Arm(ctypes.Structure):
    _fields_ = [("n_joints", ctypes.c_uint8), ("has_gripper", ctypes.c_uint8), ("control_rate_hz", ctypes.c_uint16),
                ("feedback_rate_hz", ctypes.c_uint16), ("watchdog_hold_ms", ctypes.c_uint16),
                ("watchdog_estop_ms", ctypes.c_uint16), ("joint", ctypes.c_float * 24), ("ee", ctypes.c_float * 24)]


class InProcessFirmware:
    """The C firmware library in a thread of this process, on `loop:NAME` or a python-can bus.

    Over CAN it receives raw frames and segments its replies with the C code (wwfw_can_*), so the host's
    Python segmentation and the firmware's C segmentation meet on the bus. The arm follows commands exactly."""

    def __init__(self, *, loop: str | None = None, can_bus=None, fd: bool = False, joints: int = 6,
                 control_rate: int = 250, hold_ms: int = 250, estop_ms: int = 1000, boot_id: int = 1):
        self.lib = ctypes.CDLL(str(build("lib")))
        L = self.lib
        L.wwfw_sizeof.restype = ctypes.c_size_t
        L.wwfw_handle_message.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        L.wwfw_tick.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        L.wwfw_outbox_pop.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t)]
        L.wwfw_can_feed.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p, ctypes.c_size_t]
        L.wwfw_can_segment.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t,
                                       ctypes.POINTER(ctypes.c_uint32), ctypes.c_char_p]
        L.wwfw_can_segment.restype = ctypes.c_size_t
        L.wwfw_can_frame_count.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
        L.wwfw_can_frame_count.restype = ctypes.c_size_t
        L.wwfw_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32]
        L.wwfw_default_arm.argtypes = [ctypes.c_void_p, ctypes.c_uint8]
        L.wwfw_get_cols.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        L.wwfw_set_measured.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        L.wwfw_set_log.argtypes = [ctypes.c_void_p, _LOGFN, ctypes.c_void_p]
        self.fw = ctypes.create_string_buffer(L.wwfw_sizeof())
        self.can_rx = ctypes.create_string_buffer(2048)
        self.arm = _Arm()
        L.wwfw_default_arm(ctypes.byref(self.arm), joints)
        self.arm.control_rate_hz, self.arm.watchdog_hold_ms, self.arm.watchdog_estop_ms = control_rate, hold_ms, estop_ms
        self.lines: list[tuple[int, str]] = []
        self._logfn = _LOGFN(lambda ctx, line: self.lines.append((self.now_ms(), line.decode())))
        L.wwfw_set_log(self.fw, self._logfn, None)
        self._t0 = time.monotonic()
        L.wwfw_init(self.fw, ctypes.byref(self.arm), boot_id)
        self.loop = None
        if loop is not None:
            from wallwm_edge.bridge.transport import loop_peer
            self.loop = loop_peer(loop)
        self.bus, self.fd = can_bus, fd
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="InProcessFirmware", daemon=True)
        self._thread.start()

    def now_ms(self) -> int:
        return int((time.monotonic() - self._t0) * 1000) & 0xFFFFFFFF

    def _send(self, msg: bytes) -> None:
        if self.loop is not None:
            self.loop.send(msg)
            return
        import can

        fb = 64 if self.fd else 8
        data = ctypes.create_string_buffer(64)
        off = ctypes.c_uint32()
        for i in range(self.lib.wwfw_can_frame_count(len(msg), fb)):
            n = self.lib.wwfw_can_segment(msg, len(msg), fb, i, ctypes.byref(off), data)
            payload = data.raw[:n]
            if self.fd:
                from wallwm_edge.bridge.framing import fd_length
                payload += bytes(fd_length(n) - n)
            self.bus.send(can.Message(arbitration_id=0x140 + off.value, data=payload, is_extended_id=False,
                                      is_fd=self.fd, bitrate_switch=self.fd))

    def _run(self) -> None:
        period = 1.0 / self.arm.control_rate_hz
        next_t = time.monotonic()
        out = ctypes.create_string_buffer(256)
        n = ctypes.c_size_t()
        cmd = (ctypes.c_float * 8)()
        zeros = (ctypes.c_float * 8)()
        while not self._stop.is_set():
            wait = max(0.0, next_t - time.monotonic())
            if self.loop is not None:
                for m in self.loop.recv(wait):
                    self.lib.wwfw_handle_message(self.fw, m, len(m))
            else:
                f = self.bus.recv(wait)
                while f is not None:
                    off = f.arbitration_id - 0x100
                    if not f.is_extended_id and 0 <= off < 64:
                        d = bytes(f.data)
                        self.lib.wwfw_can_feed(self.fw, self.can_rx, off, d, len(d))
                    f = self.bus.recv(0.0)
            now = time.monotonic()
            if now - next_t > 0.2:
                next_t = now
            while now >= next_t:
                self.lib.wwfw_tick(self.fw, self.now_ms())
                self.lib.wwfw_get_cols(self.fw, cmd)
                self.lib.wwfw_set_measured(self.fw, cmd, zeros)
                next_t += period
            while self.lib.wwfw_outbox_pop(self.fw, out, ctypes.byref(n)):
                self._send(out.raw[:n.value])

    def events(self) -> list[tuple[int, str, dict]]:
        return [(t, l.split()[0], dict(p.split("=", 1) for p in l.split()[1:] if "=" in p)) for t, l in list(self.lines)]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
