"""The on-board control loop: cameras -> student -> chunk scheduler -> bridge -> firmware, torch-free.

    result = run(RunConfig())          # the default: shipped student, simulated rig, simulated firmware

One control step per tick at `rate_hz` (also the chunks' point rate, so one chunk point = one step):
  1. read the firmware's latest STATE (reconnect if the link is down);
  2. simulated world only: step Meta-World so the hand follows the arm's measured EE pose (actuation.py);
  3. take a finished chunk from the inference worker: freeze the committed prefix, anchor, send "after";
  4. when the firmware holds <= `lead` points (or, --sync, nothing), capture the views and start inference;
  5. update the status line; log.
Every chunk, drop, overrun, link loss and the end are written to out/log.jsonl as they happen; the
report folder is written at the end whatever the reason (done, success, step limit, Ctrl-C, error).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from wallwm_edge.errors import ConfigError, DataError, WallwmError

REPO_ROOT = Path(__file__).resolve().parents[2]


def default_student() -> Path:
    """WALLWM_STUDENT, else checkpoints/student of the source checkout, else the one shipped in the package."""
    env = os.environ.get("WALLWM_STUDENT")
    if env:
        return Path(env)
    for cand in (REPO_ROOT / "checkpoints" / "student", Path(__file__).resolve().parents[1] / "checkpoints" / "student"):
        if cand.is_dir():
            return cand
    return REPO_ROOT / "checkpoints" / "student"


@dataclass(frozen=True)
class Faults:
    """Fault injection (tests, demos): at which chunk (0-based) what happens."""

    drop_frame: tuple[int, ...] = ()  # captures whose wrist view is dropped
    overrun: tuple[tuple[int, float], ...] = ()  # (chunk, extra seconds of inference)
    disconnect: tuple[tuple[int, float], ...] = ()  # (after chunk, seconds unplugged)

    @staticmethod
    def parse(specs) -> "Faults":
        """'drop_frame@2', 'overrun@3:1.5', 'disconnect@4:0.8' (several allowed)."""
        drop, over, disc = [], [], []
        for spec in specs or ():
            name, _, rest = spec.partition("@")
            at, _, arg = rest.partition(":")
            try:
                k = int(at)
                sec = float(arg) if arg else 0.0
            except ValueError:
                raise ConfigError(f"--inject {spec!r}: expected NAME@CHUNK[:SECONDS]") from None
            if name == "drop_frame":
                drop.append(k)
            elif name == "overrun":
                over.append((k, sec or 1.0))
            elif name == "disconnect":
                disc.append((k, sec or 0.6))
            else:
                raise ConfigError(f"--inject {spec!r}: unknown fault {name!r}; known: drop_frame, overrun, disconnect")
        return Faults(tuple(drop), tuple(over), tuple(disc))


@dataclass(frozen=True)
class RunConfig:
    student: str = ""  # "" -> default_student()
    engine: str = "cpu"  # cpu | tensorrt
    precision: str = "auto"
    threads: int = 1  # onnxruntime intra-op threads (the control loop keeps the other core)
    task: str = "pick-place-v3"
    seed: int = 0
    plan: str = ""  # plan file (JSON/YAML); "" -> the task's events from the registry
    interactive: bool = False  # an operator types each next event
    unified: bool = False  # fixed-length chunks from the task instruction
    source: str = "sim"  # sim | opencv:DEV,... | folder:PATH
    rig: str = ""  # rig file; "" -> the simulator's rig (required for other sources)
    port: str = ""  # "" -> the simulated firmware on a pty; else serial:/dev/ttyUSB0, can:socketcan:can0...
    rate_hz: float = 20.0  # control steps (= chunk points) per second
    max_steps: int = 300
    max_chunks: int = 0  # 0: no limit
    event_cap: int = 120  # planner's safety cap, steps per event
    sync: bool = False  # synchronous baseline: infer only when the firmware is idle
    out: str = ""  # report folder; "" -> runs/run-YYYYmmdd-HHMMSS
    gif: bool = True
    status: bool = True
    stale_s: float = 1.0  # a chunk result older than this is discarded
    max_frame_age_s: float = 1.0  # a dropped view may borrow its last good image up to this age (~a chunk)
    rtc: str = "auto"  # real-time chunking: inpaint (needs the step graph), align, auto (inpaint when possible)
    faults: Faults = field(default_factory=Faults)


@dataclass
class RunResult:
    out: Path
    reason: str
    report: dict


class Runtime:
    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        if cfg.rate_hz <= 0 or cfg.rate_hz > 500:
            raise ConfigError(f"--rate must be in (0, 500] Hz, got {cfg.rate_hz}")
        if cfg.max_steps < 1:
            raise ConfigError(f"--max-steps must be >= 1, got {cfg.max_steps}")
        self.out = Path(cfg.out or f"runs/run-{time.strftime('%Y%m%d-%H%M%S')}")
        self.out.mkdir(parents=True, exist_ok=True)
        from wallwm_edge.runtime.report import JsonlLog

        self.log = JsonlLog(self.out / "log.jsonl")
        self.stages: dict[str, list[float]] = {"capture": [], "mask": [], "inference": [], "bridge": []}
        self.frames: list[np.ndarray] = []
        self.counters = {"chunks": 0, "frames_dropped": 0, "overruns": 0, "stale_results": 0, "link_lost": 0,
                         "link_restored": 0, "underrun_steps": 0, "late_ticks": 0}
        self.steps_on_time = 0
        self.steps_counted = 0
        self.world = self.arm = self.worker = self.source = None

    # ---- setup ---------------------------------------------------------------------------------------
    def setup(self) -> None:
        from wallwm_edge.runtime.arm import ArmSession
        from wallwm_edge.runtime.engine import Student
        from wallwm_edge.runtime.masks import MaskProvider
        from wallwm_edge.runtime.scheduler import InferenceWorker, LeadEstimate
        from wallwm_edge.runtime.sources import make_source

        cfg = self.cfg
        student_path = Path(cfg.student) if cfg.student else default_student()
        self.student = Student.load(student_path, cfg.engine, cfg.precision, cfg.threads, cfg.seed)
        st = self.student
        if cfg.unified and st.mode != "unified":
            raise ConfigError(f"unified mode needs a student exported in unified mode; {st.name} was trained in "
                              f"{st.mode!r} mode (variable-length chunks from next-event instructions). Run without --unified, "
                              "or distill and export a unified student (preset with mode=unified)")
        if cfg.rtc not in ("auto", "inpaint", "align"):
            raise ConfigError(f"--rtc must be auto, inpaint or align, got {cfg.rtc!r}")
        if cfg.rtc == "inpaint" and not st.can_inpaint:
            raise ConfigError(f"--rtc inpaint needs the student's step graph beside it ({student_path}: no *.step.onnx "
                              "with the same config); export with --graphs sample,step, or use --rtc align")
        self.inpaint = st.can_inpaint and cfg.rtc != "align"
        if not cfg.unified and st.mode == "unified":
            raise ConfigError(f"{st.name} is a unified-mode student: run it with --unified (it takes the task instruction)")
        self.planner = self._planner()  # plan and captions are checked before anything moves
        self.instruction_fixed = None
        if cfg.unified:
            from wallwm_edge.events.vocab import caption

            self.instruction_fixed = caption(f"task:{cfg.task}").text
            st.embed(self.instruction_fixed)
        rig = None
        if cfg.source == "sim":
            from wallwm_edge.runtime.actuation import SimWorld

            self.world = SimWorld(cfg.task, st.views, st.image_size, cfg.seed, max_steps=500)
            rig = self.world.env.rig
        if cfg.rig:
            from wallwm_edge.calibration.rig import Rig

            rig = Rig.load(cfg.rig)
        if rig is None and st.meta.get("rig"):  # the rig the student was trained with, carried by its sidecar
            from wallwm_edge.calibration.rig import Rig

            rig = Rig.from_json(st.meta["rig"], where=f"{st.meta['onnx_path']} sidecar rig: ")
        if rig is None:
            raise ConfigError(f"camera source {cfg.source!r} needs a rig file (--rig rig.json from `wallwm-edge calibrate`); "
                              "the student's sidecar carries none")
        self.source = make_source(cfg.source, st.views, st.image_size, env=self.world.env if self.world else None)
        self.masks = MaskProvider(rig, st.views, st.patch, st.near, st.far, st.image_size)
        self.arm = ArmSession(cfg.port or None, fw_log=self.out / "fw.log", on_event=self._link_event)
        self.worker = InferenceWorker(st, self.masks)
        self.lead = LeadEstimate(cfg.rate_hz, cap=max(1, st.horizon // 2))
        self.log.write("start", sync=True, config=_config_json(cfg), student=st.name, student_mode=st.mode,
                       rtc="inpaint" if self.inpaint else "align",
                       views=list(st.views), image_size=list(st.image_size), horizon=st.horizon, rig_cameras=rig.names,
                       firmware=self.arm.port, arm={"joints": self.arm.arm.n_joints, "control_rate_hz": self.arm.arm.control_rate_hz,
                                                     "queue_points": self.arm.arm.queue_points},
                       plan=[s.instruction for s in self.planner.plan.steps] if hasattr(self.planner, "plan") else None)
        self._warm_up(rig)

    def _warm_up(self, rig) -> None:
        """One inference and one mask before the clock starts: onnxruntime's first run allocates and
        optimises (~10x a normal call), which would otherwise inflate the first chunk's latency and the lead."""
        st = self.student
        H, W = st.image_size
        t0 = time.perf_counter()
        vm = self.masks.view_mask(self.world.env.cam_poses() if self.world else None)
        text = self.instruction if self.instruction is not None else next(iter(st.captions))
        blank = np.zeros((len(st.views), H, W, 3), np.uint8)
        st.act(blank, np.zeros(4, np.float32), text, vm)
        if self.inpaint:  # the step graph's session warms up separately
            st.act(blank, np.zeros(4, np.float32), text, vm, prefix=np.zeros((1, st.action_dim), np.float32))
        self.log.write("warm_up", ms=round((time.perf_counter() - t0) * 1e3, 2))

    def _planner(self):
        from wallwm_edge.runtime.planner import EventPlanner, InteractivePlanner, load_plans

        cfg = self.cfg
        if cfg.unified:
            return None
        from wallwm_edge.eval.closed_loop import registry_plans, task_catalog

        catalog = task_catalog()
        if cfg.interactive:
            def ask(prompt: str) -> str:
                while True:
                    line = input(prompt).strip()
                    text = catalog[line].caption if line in catalog else line
                    if line.lower() in ("", "done", "quit", "exit") or text in self.student.captions:
                        return line
                    print(f"  {self.student.unknown_instruction(text)}")  # names the rejected text and the remedy

            return InteractivePlanner(ask, cfg.event_cap, catalog)
        if cfg.plan:
            plans = load_plans(cfg.plan, catalog)
            if cfg.task not in plans:
                raise ConfigError(f"{cfg.plan}: no plan for task {cfg.task!r}; it has {sorted(plans)}")
            plan = plans[cfg.task]
        else:
            plans = registry_plans()
            if cfg.task not in plans:
                raise ConfigError(f"task {cfg.task!r} has no events in the registry; known: {', '.join(sorted(plans))}")
            plan = plans[cfg.task]
        for i, s in enumerate(plan.steps):  # fail before the arm moves, naming the event
            try:
                self.student.embed(s.instruction)
            except DataError as e:
                raise DataError(f"plan for {cfg.task!r}, event {i}: {e}") from None
        return EventPlanner(plan, cfg.event_cap)

    def _link_event(self, kind: str, **kw) -> None:
        if kind in self.counters:
            self.counters[kind] += 1
        self.log.write(kind, sync=True, **kw)

    # ---- helpers ----------------------------------------------------------------------------------------
    @property
    def instruction(self) -> str | None:
        return self.instruction_fixed if self.planner is None else self.planner.instruction

    def _event_label(self) -> str:
        if self.planner is None:
            return f"task: {self.instruction_fixed}"
        if self.planner.done:
            return "plan done"
        i = len(self.planner.history)  # the current event is the last one begun (plan or prompt alike)
        n = len(self.planner.plan.steps) if hasattr(self.planner, "plan") else "?"  # a prompt has no known length
        return f"event {i}/{n}: {self.planner.instruction}"

    def _remaining(self, st) -> int:
        """Points the firmware still has to play (queued plus the one it is heading to)."""
        if st is None:
            return 0
        return int(st.level) + (1 if st.playing != 0xFFFF else 0)

    def _proprio_and_pose(self, st):
        if self.world is not None:
            return self.world.proprio.copy(), None
        pos = np.asarray(st.pos, np.float64)
        from wallwm_edge.runtime.masks import pose_from_ee

        return np.array([pos[0], pos[1], pos[2], pos[6]], np.float32), pose_from_ee(pos[:6])

    # ---- the loop --------------------------------------------------------------------------------------
    def home(self) -> None:
        """Bring the firmware's arm to the hand's start pose (one held point) before the first chunk."""
        from wallwm_edge.runtime.actuation import hold_targets

        if self.world is None:
            st = self.arm.state()
            self.anchor = np.asarray(st.pos[:3], np.float64)
            return
        xyz = self.world.mocap
        t = self.arm.send(hold_targets(xyz, 0.0), rate_hz=self.cfg.rate_hz, chunk_id=0xFFF0, event_id=0)
        if t is None:
            raise WallwmError("the firmware link dropped while homing the arm")
        self.arm.link.wait_state(lambda s: s.playing == 0xFFFF and np.abs(np.asarray(s.pos[:3]) - xyz).max() < 2e-3
                                 and s.received_at > t.t_queued, 10.0)
        self.anchor = xyz
        self.log.write("homed", xyz=xyz)

    def _capture(self, st, chunk_id: int):
        from wallwm_edge.runtime.scheduler import Job
        from wallwm_edge.runtime.sources import SimSource

        if chunk_id in self.cfg.faults.drop_frame and isinstance(self.source, SimSource):
            self.source.drop_next = {len(self.student.views) - 1}  # the wrist camera: the one a cable flexes
        t0 = time.perf_counter()
        frame = self.source.capture()
        cap_s = time.perf_counter() - t0
        images = frame.images
        for v in np.nonzero(~frame.ok)[0]:
            # A dropped view borrows its last good image if that is recent (the scene barely moved); a camera
            # that stays dark gets no stand-in: the capture is retried next step and the arm plays out its queue.
            self.counters["frames_dropped"] += 1
            reuse = self.last_good is not None and frame.t - self.last_good_t < self.cfg.max_frame_age_s
            if reuse:
                images[v] = self.last_good[v]
            self.log.write("frame_dropped", sync=True, chunk=chunk_id, view=self.student.views[v], reused_previous=reuse)
            if not reuse:
                return None
        self.last_good, self.last_good_t = images.copy(), frame.t
        self.stages["capture"].append(cap_s)
        proprio, T_flange = self._proprio_and_pose(st)
        committed = 0 if self.cfg.sync else self._remaining(st)
        prefix = None
        if self.inpaint and committed and len(self.tape) >= committed:
            prefix = np.asarray(self.tape[-committed:], np.float32)  # the queue is FIFO: its tail is what still plays
        delay = dict(self.cfg.faults.overrun).get(chunk_id, 0.0)
        if self.cfg.gif:
            tp = f"  TP {self.world.progress:.0f}" if self.world else ""
            from wallwm_edge.runtime.report import caption_frame

            self.frames.append(caption_frame(images, [self._event_label(), f"chunk {chunk_id}  step {self.steps}{tp}"]))
        return Job(chunk_id, self.instruction, getattr(self.planner, "index", 0) if self.planner else 0, images, proprio,
                   frame.cam_poses, T_flange, committed, time.monotonic(), cap_s, delay, prefix)

    def _commit(self, r) -> None:
        """A finished chunk: freeze the committed prefix, anchor, cap, send; advance the planner."""
        from wallwm_edge.runtime.actuation import ee_targets
        from wallwm_edge.runtime.scheduler import align

        job = r.job
        if r.error is not None:
            if isinstance(r.error, WallwmError):
                raise r.error
            raise RuntimeError(f"inference of chunk {job.chunk_id} failed: {r.error!r}") from r.error
        age = time.monotonic() - job.t_capture
        self.stages["mask"].append(r.mask_s)
        self.stages["inference"].append(r.infer_s)
        if age > self.cfg.stale_s:
            self.counters["stale_results"] += 1
            self.log.write("stale_result", sync=True, chunk=job.chunk_id, age_s=round(age, 3))
            return
        out = r.out
        if self.planner is not None and job.instruction == self.planner.instruction and self.planner.observe(out.done):
            # The event is over on this chunk's (fresh) observation: nothing of it runs; the next capture
            # asks for the next event (wallwm_edge.events.end_rule).
            self.counters["chunks"] += 1
            self.log.write("chunk", sync=True, chunk=job.chunk_id, instruction=job.instruction, event=job.event_index,
                           length=int(out.length), executed=0, done=True, advanced=True, step=self.steps,
                           capture_ms=job.capture_s * 1e3, mask_ms=r.mask_s * 1e3, infer_ms=r.infer_s * 1e3)
            return
        actions = out.actions[: out.length]
        start = align(len(actions), job.committed)
        todo = actions[start:]
        limit = self.cfg.max_steps - self.steps - job.committed
        if self.planner is not None:
            limit = min(limit, self.planner.cap)
        todo = todo[: max(0, limit)]
        bridge_s = 0.0
        if len(todo):
            st = self.arm.state() if self.arm.connected else None
            if self.anchor is None and st is None:
                self.log.write("chunk_lost", sync=True, chunk=job.chunk_id, why="link down")
                return
            anchor = self.anchor if self.anchor is not None else np.asarray(st.pos[:3], np.float64)
            lo, hi = (self.world.lo, self.world.hi) if self.world else (np.full(3, -1.0), np.full(3, 1.0))
            points = ee_targets(todo, anchor, lo, hi)
            t0 = time.perf_counter()
            ticket = self.arm.send(points, self.cfg.rate_hz, job.chunk_id, job.event_index)
            bridge_s = time.perf_counter() - t0
            if ticket is None:
                self.log.write("chunk_lost", sync=True, chunk=job.chunk_id, why="link down")
                return
            self.anchor = points[-1, :3]
            self.tape.extend(np.clip(todo, -1.0, 1.0).tolist())
            del self.tape[:-256]
            self.last_send = time.monotonic()
            self.stages["bridge"].append(bridge_s)
            self.lead.add(job.capture_s + r.mask_s + r.infer_s - job.delay_s + bridge_s)  # a drill's sleep is not the pipeline
        self.counters["chunks"] += 1
        if job.delay_s:
            self.counters["overruns"] += 1
        advanced = self.planner.executed(len(todo)) if self.planner is not None else False
        self.last_chunk = {"chunk": job.chunk_id, "len": len(todo), "infer_ms": r.infer_s * 1e3}
        self.log.write("chunk", sync=True, chunk=job.chunk_id, instruction=job.instruction, event=job.event_index,
                       length=int(out.length), executed=len(todo), skipped_committed=start, committed=job.committed,
                       done=bool(out.done), advanced=advanced, capture_ms=job.capture_s * 1e3, mask_ms=r.mask_s * 1e3,
                       infer_ms=r.infer_s * 1e3, bridge_ms=bridge_s * 1e3, age_ms=age * 1e3, step=self.steps,
                       lead=self.lead.points, injected_delay_s=job.delay_s, inpainted=out.inpainted)
        for k, sec in self.cfg.faults.disconnect:
            if k == job.chunk_id:
                self.arm.unplug(sec)
                self.anchor, self.tape = None, []

    def loop(self) -> str:
        cfg = self.cfg
        from tqdm import tqdm

        self.steps = 0
        self.anchor = None
        self.tape: list = []  # raw actions sent, in order (the committed prefix is its tail)
        self.last_good, self.last_good_t = None, 0.0
        self.last_send = 0.0
        self.last_chunk = {}
        self.home()
        next_chunk = 0
        started = False  # on-time accounting starts with the first chunk's first point
        drained_since = None
        period = 1.0 / cfg.rate_hz
        bar = tqdm(total=cfg.max_steps, unit="step", disable=not cfg.status, dynamic_ncols=True, mininterval=0.25)
        next_t = time.monotonic()
        last_pos = None
        was_playing = False
        try:
            while True:
                now = time.monotonic()
                if next_t > now:
                    time.sleep(next_t - now)
                    now = next_t
                # A stalled host (a slow capture, the synchronous baseline waiting for inference) still owes
                # the world every control step that passed: step it, and count those steps, one by one.
                ticks = 1 + int((now - next_t) // period)
                next_t += ticks * period
                self.counters["late_ticks"] += ticks - 1
                was_connected = self.arm.connected
                if not self.arm.poll() and was_connected:
                    self.anchor = None
                    self.tape = []  # the firmware drops its queue when it holds: nothing is committed
                st = self.arm.state() if self.arm.connected else None
                if st is not None:
                    last_pos = st.pos
                # 2. the world follows the arm; count whether each control step had a point to play
                playing = st is not None and st.mode == 1 and st.playing != 0xFFFF
                started = started or (playing and self.counters["chunks"] > 0)  # from the first point played
                if started and was_playing and not playing and not self._no_more_chunks(next_chunk):
                    self.log.write("underrun", step=self.steps, chunk_in_flight=self.worker.busy,
                                   fw_mode=st.mode_name if st is not None else "link down")
                was_playing = playing
                for _ in range(ticks):
                    # A step is owed a point from the first chunk on, until no further chunk will come;
                    # after that only the steps still playing the last chunk are counted (all on time).
                    if started and (not self._no_more_chunks(next_chunk) or playing):
                        self.steps_counted += 1
                        self.steps_on_time += int(playing)
                        self.counters["underrun_steps"] += int(not playing)
                    if self.world is not None and last_pos is not None and not self.world.done:
                        self.world.step(last_pos)
                    self.steps += 1
                bar.update(ticks)
                # 3. a finished chunk
                r = self.worker.poll()
                if r is not None:
                    self._commit(r)
                # 4. trigger the next one
                if (not self.worker.busy and self.arm.connected and st is not None and st.received_at > self.last_send
                        and self.instruction is not None and (not cfg.max_chunks or next_chunk < cfg.max_chunks)):
                    rem = self._remaining(st)
                    due = rem == 0 and st.playing == 0xFFFF if cfg.sync else rem <= self.lead.points
                    if due:
                        job = self._capture(st, next_chunk)
                        if job is not None:
                            self.worker.submit(job)
                            next_chunk += 1
                            if cfg.sync:  # the baseline: nothing moves on until the chunk is there
                                r = self.worker.poll(timeout=30.0)
                                self._commit(r)
                if cfg.status:
                    bar.set_postfix_str(self._status(st), refresh=False)
                # 5. the end
                if self.world is not None and self.world.success:
                    return "success"
                if self.steps >= cfg.max_steps or (self.world is not None and self.world.done):
                    return "step limit"
                if (self._no_more_chunks(next_chunk) and st is not None and st.received_at > self.last_send
                        and self._remaining(st) == 0):
                    drained_since = drained_since or now
                    if now - drained_since > 0.1:
                        return "plan done" if self.planner is not None and self.planner.done else "chunk limit"
        except KeyboardInterrupt:
            return "interrupted"
        finally:
            bar.close()

    def _no_more_chunks(self, next_chunk: int) -> bool:
        """The plan is done (or the chunk limit reached) and nothing is being computed."""
        limit = bool(self.cfg.max_chunks) and next_chunk >= self.cfg.max_chunks
        return (limit or (self.planner is not None and self.planner.done)) and not self.worker.busy

    def _status(self, st) -> str:
        buf = "link down" if not self.arm.connected or st is None else f"fw {st.mode_name} buf {self._remaining(st)}"
        lc = self.last_chunk
        inf = f"{lc['infer_ms']:.1f}ms" if lc else "-"
        return f"{self._event_label()[:48]} | chunk {lc.get('chunk', '-')} | infer {inf} | {buf}"

    # ---- the end -------------------------------------------------------------------------------------------
    def finish(self, reason: str, error: str = "") -> dict:
        from wallwm_edge.runtime.report import STAGES, latency_histogram, percentiles, write_gif, write_report

        held = False
        if self.arm is not None:
            try:
                held = self.arm.hold()
            except Exception:  # noqa: BLE001 - the report must still be written
                held = False
            self.log.write("hold", sync=True, confirmed=held)
        if self.worker is not None:
            self.worker.close()
        if self.world is not None and self.cfg.gif and self.source is not None:
            try:
                from wallwm_edge.runtime.report import caption_frame

                frame = self.source.capture()
                tp = f"TP {self.world.progress:.0f}  success {self.world.success}"
                self.frames.append(caption_frame(frame.images, [f"end: {reason}", f"step {self.steps}  {tp}"]))
            except Exception:  # noqa: BLE001
                pass
        lat = {s: percentiles(self.stages[s]) for s in STAGES}
        report = {
            "format": "wallwm-run/1",
            "reason": reason,
            "error": error,
            "student": getattr(getattr(self, "student", None), "name", None),
            "task": self.cfg.task,
            "mode": "unified" if self.cfg.unified else "event",
            "scheduler": "sync" if self.cfg.sync else "async",
            "rtc": "inpaint" if getattr(self, "inpaint", False) else "align",
            "rate_hz": self.cfg.rate_hz,
            "steps": getattr(self, "steps", 0),
            "latency": lat,
            "on_time": {"steps": self.steps_counted, "served": self.steps_on_time,
                        "share": round(self.steps_on_time / self.steps_counted, 4) if self.steps_counted else None},
            "counters": self.counters,
            "hold_confirmed": held,
        }
        if self.world is not None:
            report.update(success=bool(self.world.success), task_progress=self.world.progress,
                          events_completed=self.world.tracker.completed, events_total=self.world.tracker.total)
        if getattr(self, "planner", None) is not None:
            report["events"] = [{"instruction": h.instruction, "start": h.start, "end": h.end, "reason": h.reason}
                                for h in self.planner.history]
        if self.arm is not None:
            report["link"] = {"disconnects": self.arm.disconnects, "reconnects": self.arm.reconnects,
                              "stats": dict(self.arm.link.stats) if self.arm.link else {}}
        try:
            latency_histogram(self.stages, self.out / "latency.png", f"{report['student']} @ {self.cfg.rate_hz:g} Hz")
            report["latency_png"] = "latency.png"
        except Exception as e:  # noqa: BLE001 - a plotting failure must not lose the report
            report["latency_png_error"] = str(e)
        if self.cfg.gif and self.frames:
            write_gif(self.frames, self.out / "episode.gif", fps=4.0)
            report["gif"] = "episode.gif"
        write_report(self.out, report)
        self.log.write("end", sync=True, reason=reason, error=error, success=report.get("success"),
                       task_progress=report.get("task_progress"), on_time=report["on_time"])
        self.log.close()
        for x in (self.arm, self.source, self.world):
            if x is not None:
                try:
                    x.close()
                except Exception:  # noqa: BLE001
                    pass
        return report


def _config_json(cfg: RunConfig) -> dict:
    d = asdict(cfg)
    d["faults"] = asdict(cfg.faults)
    return d


def run(cfg: RunConfig) -> RunResult:
    """Set up, loop, and always write the report (also on Ctrl-C and on errors, which are re-raised)."""
    rt = Runtime(cfg)
    reason, error = "error", ""
    try:
        rt.setup()
        reason = rt.loop()
    except KeyboardInterrupt:
        reason = "interrupted"
    except BaseException as e:
        error = f"{type(e).__name__}: {e}"
        rt.log.write("error", sync=True, error=error)
        try:
            rt.finish("error", error)
        except Exception:  # noqa: BLE001
            pass
        raise
    report = rt.finish(reason, error)
    return RunResult(rt.out, reason, report)
