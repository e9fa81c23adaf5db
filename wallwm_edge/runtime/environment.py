"""The environment of the on-board loop: the cameras and the arm link, and in simulation the Meta-World
cell whose hand follows the simulated firmware's arm.

    env = Environment(cfg, student, fw_log, on_link_event)
    st, dropped = env.get_state()        # the firmware's latest STATE (None while the link is down)
    frame = env.capture()                # the views, each with an ok flag
    env.send(env.targets(actions, anchor), rate_hz, chunk_id, event)

Opened in the order the old setup used (world, rig, source, sight-cone masks, then the arm link), so a
rig that does not fit the student fails before the firmware starts; a failure part way closes what
was opened.
"""

from __future__ import annotations

import numpy as np

from wallwm_edge.calibration.rig import Rig
from wallwm_edge.errors import ConfigError, WallwmError
from wallwm_edge.runtime.actuation import SimWorld, ee_targets, hold_targets
from wallwm_edge.runtime.arm import ArmSession
from wallwm_edge.runtime.masks import MaskProvider, pose_from_ee
from wallwm_edge.runtime.sources import SimSource, make_source


class Environment:
    def __init__(self, cfg, student, fw_log, on_link_event):
        self.cfg = cfg  # a loop.RunConfig
        self.world: SimWorld | None = None
        self.source = self.arm = None
        try:
            self._open(student, fw_log, on_link_event)
        except BaseException:
            self.close()
            raise

    def _open(self, st, fw_log, on_link_event) -> None:
        cfg = self.cfg
        rig = None
        if cfg.source == "sim":
            self.world = SimWorld(cfg.task, st.views, st.image_size, cfg.seed, max_steps=500)
            rig = self.world.env.rig
        if cfg.rig:
            rig = Rig.load(cfg.rig)
        if rig is None and st.meta.get("rig"):  # the rig the student was trained with, carried by its sidecar
            rig = Rig.from_json(st.meta["rig"], where=f"{st.meta['onnx_path']} sidecar rig: ")
        if rig is None:
            raise ConfigError(f"camera source {cfg.source!r} needs a rig file (--rig rig.json from `wallwm-edge calibrate`); "
                              "the student's sidecar carries none")
        self.rig = rig
        self.wrist_view = len(st.views) - 1  # the wrist camera: the one a cable flexes (drop_frame drills)
        self.source = make_source(cfg.source, st.views, st.image_size, env=self.world.env if self.world else None)
        self.masks = MaskProvider(rig, st.views, st.patch, st.near, st.far, st.image_size)
        self.arm = ArmSession(cfg.port or None, fw_log=fw_log, on_event=on_link_event)

    # ---- observation ---------------------------------------------------------------------------------
    def get_state(self):
        """Poll the link (reconnecting when down): (latest STATE or None, whether the link just dropped)."""
        was_connected = self.arm.connected
        dropped = not self.arm.poll() and was_connected
        return (self.arm.state() if self.arm.connected else None), dropped

    def capture(self, drop_wrist: bool = False):
        if drop_wrist and isinstance(self.source, SimSource):
            self.source.drop_next = {self.wrist_view}
        return self.source.capture()

    def cam_poses(self):
        """Every camera's pose where the simulator knows them; None: the masks use the rig and the arm's pose."""
        return self.world.env.cam_poses() if self.world else None

    def proprio_and_pose(self, st):
        if self.world is not None:
            return self.world.proprio.copy(), None
        pos = np.asarray(st.pos, np.float64)
        return np.array([pos[0], pos[1], pos[2], pos[6]], np.float32), pose_from_ee(pos[:6])

    @staticmethod
    def remaining(st) -> int:
        """Points the firmware still has to play (queued plus the one it is heading to)."""
        if st is None:
            return 0
        return int(st.level) + (1 if st.playing != 0xFFFF else 0)

    # ---- action ----------------------------------------------------------------------------------------
    def home(self, rate_hz: float) -> np.ndarray:
        """Bring the firmware's arm to the hand's start pose (one held point); returns the anchor position."""
        if self.world is None:
            return np.asarray(self.arm.state().pos[:3], np.float64)
        xyz = self.world.mocap
        t = self.arm.send(hold_targets(xyz, 0.0), rate_hz=rate_hz, chunk_id=0xFFF0, event_id=0)
        if t is None:
            raise WallwmError("the firmware link dropped while homing the arm")
        self.arm.link.wait_state(lambda s: s.playing == 0xFFFF and np.abs(np.asarray(s.pos[:3]) - xyz).max() < 2e-3
                                 and s.received_at > t.t_queued, 10.0)
        return xyz

    def targets(self, actions: np.ndarray, anchor: np.ndarray) -> np.ndarray:
        """Policy actions -> firmware EE targets from `anchor`, clipped to the workspace."""
        lo, hi = (self.world.lo, self.world.hi) if self.world else (np.full(3, -1.0), np.full(3, 1.0))
        return ee_targets(actions, anchor, lo, hi)

    def send(self, points: np.ndarray, rate_hz: float, chunk_id: int, event_id: int):
        """Queue `points` on the firmware after what it holds; None when the link is down."""
        return self.arm.send(points, rate_hz, chunk_id, event_id)

    def follow(self, pos) -> None:
        """One control step of the simulated cell toward the arm's measured pose (nothing on a robot)."""
        if self.world is not None and pos is not None and not self.world.done:
            self.world.step(pos)

    # ---- the end ---------------------------------------------------------------------------------------
    def hold(self) -> bool:
        return self.arm.hold()

    def close(self) -> None:
        for x in (self.arm, self.source, self.world):
            if x is not None:
                try:
                    x.close()
                except Exception:  # noqa: BLE001 - closing the rest matters more
                    pass
