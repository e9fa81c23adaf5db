"""The EE mapping closes the loop: expert actions -> firmware EE targets -> simulated arm -> Meta-World hand.

If the targets the runtime sends, played and measured by the real simulated firmware and mapped back into
Meta-World, make the scripted expert succeed about as fast as it does with direct actions, the mapping
(actuation.py) loses nothing on the way.
"""

import numpy as np
import pytest

from wallwm_edge.runtime.actuation import SimWorld, ee_targets

pytestmark = pytest.mark.slow
VIEWS = ("corner", "topview", "gripperPOV")


def direct_expert_steps(task: str, seed: int) -> int:
    w = SimWorld(task, VIEWS, (64, 64), seed=seed)
    try:
        for k in range(200):
            w.step_action(w.env.expert_action())
            if w.success:
                return k + 1
        return 10**6
    finally:
        w.close()


@pytest.mark.parametrize("task", ["pick-place-v3"])
def test_expert_through_the_firmware_succeeds(task):
    from wallwm_edge.runtime.arm import ArmSession

    w = SimWorld(task, VIEWS, (64, 64), seed=0)
    # tracking, not the watchdog, is under test: a loaded PC stalled the host past the default 250 ms hold once
    arm = ArmSession(None, hold_ms=1000, estop_ms=4000)
    try:
        anchor = w.mocap
        for k in range(200):
            pts = ee_targets(w.env.expert_action()[None], anchor, w.lo, w.hi)  # one point per control step
            ticket = arm.send(pts, 100.0, k, 0)
            assert ticket is not None
            st = arm.link.wait_state(lambda s: s.received_at > ticket.t_queued and s.playing == 0xFFFF
                                     and np.abs(np.asarray(s.pos[:3]) - pts[0, :3]).max() < 1e-3, 5.0)
            w.step(st.pos)  # the hand follows what the firmware's arm measured
            # the mocap lands on the measured pose (Meta-World moves it at most 1 cm a step, so a step that asks
            # 1 cm plus the arm's last millimetre of settling arrives one step later)
            np.testing.assert_allclose(w.mocap, np.clip(st.pos[:3], w.lo, w.hi), atol=1.5e-3)
            anchor = pts[0, :3]
            if w.success:
                break
        assert w.success and w.progress == 100.0
        steps = k + 1
    finally:
        arm.close()
        w.close()
    assert steps <= direct_expert_steps(task, 0) + 5
