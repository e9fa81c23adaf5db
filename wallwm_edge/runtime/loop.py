"""The on-board control loop: cameras -> student -> chunk scheduler -> bridge -> firmware, torch-free.

    result = run(RunConfig())          # the default: shipped student, simulated rig, simulated firmware

Shaped as openpi's client runtime: an environment (runtime/environment.py: simulated cell or robot,
cameras + arm link), an agent (runtime/agent.py: the student, its sentence encoder and the planner) and
subscribers (runtime/subscribers.py: status line, GIF, latency plot; the JSONL log as things happen).
The loop itself is the clock and the chunk scheduling between them. One control step per tick at
`rate_hz` (also the chunks' point rate, so one chunk point = one step):
  1. read the firmware's latest STATE (reconnect if the link is down);
  2. simulated world only: step Meta-World so the hand follows the arm's measured EE pose (actuation.py);
  3. take a finished chunk from the inference worker: freeze the committed prefix, anchor, send "after";
  4. when the firmware holds <= `lead` points (or, --sync, nothing), capture the views and start inference;
  5. the subscribers see the step (status line).
Every chunk, drop, overrun, link loss and the end are written to out/log.jsonl as they happen; the
report folder is written at the end whatever the reason (done, success, step limit, Ctrl-C, error).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from wallwm_edge.errors import ConfigError, WallwmError
from wallwm_edge.runtime.agent import Agent
from wallwm_edge.runtime.engine import Student
from wallwm_edge.runtime.environment import Environment
from wallwm_edge.runtime.report import STAGES, JsonlLog, percentiles, write_report
from wallwm_edge.runtime.scheduler import InferenceWorker, Job, LeadEstimate, align
from wallwm_edge.runtime.subscribers import GifRecorder, LatencyPlot, StatusLine, Subscriber

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
    """The loop between an environment (cameras + arm link, simulated cell or robot), an agent (student +
    planner) and its subscribers (status line, GIF, latency plot; the JSONL log as things happen).

    Each pass of `loop`: the environment's state, the world follows the arm, a finished chunk is
    committed to the arm, the next one is started when the firmware runs low, the subscribers see the
    step. The inference worker and the lead estimate (runtime/scheduler.py) keep the student off the
    clock's thread."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        if cfg.rate_hz <= 0 or cfg.rate_hz > 500:
            raise ConfigError(f"--rate must be in (0, 500] Hz, got {cfg.rate_hz}")
        if cfg.max_steps < 1:
            raise ConfigError(f"--max-steps must be >= 1, got {cfg.max_steps}")
        self.out = Path(cfg.out or f"runs/run-{time.strftime('%Y%m%d-%H%M%S')}")
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = JsonlLog(self.out / "log.jsonl")
        self.gif = GifRecorder(cfg.gif, self.out / "episode.gif")
        self.subscribers: list[Subscriber] = [StatusLine(cfg.status, cfg.max_steps), LatencyPlot(self.out / "latency.png"), self.gif]
        self.stages: dict[str, list[float]] = {"capture": [], "mask": [], "inference": [], "bridge": []}
        self.counters = {"chunks": 0, "frames_dropped": 0, "overruns": 0, "stale_results": 0, "link_lost": 0,
                         "link_restored": 0, "underrun_steps": 0, "late_ticks": 0}
        self.steps_on_time = 0
        self.steps_counted = 0
        self.student: Student | None = None  # loaded by setup(); reported by name even when the agent refuses it
        self.agent: Agent | None = None  # made by setup(): a bad student or plan fails before anything moves
        self.env: Environment | None = None
        self.worker: InferenceWorker | None = None
        self.lead: LeadEstimate | None = None
        self.steps = 0  # control steps since the clock started
        self.anchor: np.ndarray | None = None  # EE position the next chunk's deltas start from
        self.tape: list = []  # raw actions sent, in order (the committed prefix is its tail)
        self.last_good, self.last_good_t = None, 0.0  # last capture with every view, for a dropped view
        self.last_send = 0.0
        self.last_chunk: dict = {}

    # ---- setup ---------------------------------------------------------------------------------------
    def setup(self) -> None:
        cfg = self.cfg
        path = Path(cfg.student) if cfg.student else default_student()
        self.student = st = Student.load(path, cfg.engine, cfg.precision, cfg.threads, cfg.seed)
        self.agent = Agent(cfg, st, path)
        self.env = Environment(cfg, st, self.out / "fw.log", self._link_event)
        env = self.env
        self.worker = InferenceWorker(st, env.masks)
        self.lead = LeadEstimate(cfg.rate_hz, cap=max(1, st.horizon // 2))
        arm = env.arm.arm
        planned = self.agent.planner.planned if self.agent.planner is not None else None
        self.log.write("start", sync=True, config=_config_json(cfg), student=st.name, student_mode=st.mode,
                       rtc="inpaint" if self.agent.inpaint else "align",
                       views=list(st.views), image_size=list(st.image_size), horizon=st.horizon, rig_cameras=env.rig.names,
                       firmware=env.arm.port, arm={"joints": arm.n_joints, "control_rate_hz": arm.control_rate_hz,
                                                   "queue_points": arm.queue_points},
                       plan=list(planned) if planned is not None else None)
        ms = self.agent.warm_up(lambda: env.masks.view_mask(env.cam_poses()))
        self.log.write("warm_up", ms=ms)

    def _link_event(self, kind: str, **kw) -> None:
        if kind in self.counters:
            self.counters[kind] += 1
        self.log.write(kind, sync=True, **kw)

    # ---- the loop --------------------------------------------------------------------------------------
    def _capture(self, st, chunk_id: int) -> Job | None:
        """The views, proprio and pose for chunk `chunk_id`; None when a dark camera has no recent stand-in."""
        agent, env = self.agent, self.env
        t0 = time.perf_counter()
        frame = env.capture(drop_wrist=chunk_id in self.cfg.faults.drop_frame)
        cap_s = time.perf_counter() - t0
        images = frame.images
        for v in np.nonzero(~frame.ok)[0]:
            # A dropped view borrows its last good image if that is recent (the scene barely moved); a camera
            # that stays dark gets no stand-in: the capture is retried next step and the arm plays out its queue.
            self.counters["frames_dropped"] += 1
            reuse = self.last_good is not None and frame.t - self.last_good_t < self.cfg.max_frame_age_s
            if reuse:
                images[v] = self.last_good[v]
            self.log.write("frame_dropped", sync=True, chunk=chunk_id, view=agent.student.views[v], reused_previous=reuse)
            if not reuse:
                return None
        self.last_good, self.last_good_t = images.copy(), frame.t
        self.stages["capture"].append(cap_s)
        proprio, T_flange = env.proprio_and_pose(st)
        committed = 0 if self.cfg.sync else env.remaining(st)
        prefix = None
        if agent.inpaint and committed and len(self.tape) >= committed:
            prefix = np.asarray(self.tape[-committed:], np.float32)  # the queue is FIFO: its tail is what still plays
        delay = dict(self.cfg.faults.overrun).get(chunk_id, 0.0)
        tp = f"  TP {env.world.progress:.0f}" if env.world else ""
        self.gif.on_capture(images, [agent.event_label(), f"chunk {chunk_id}  step {self.steps}{tp}"])
        return Job(chunk_id, agent.instruction, agent.event_index, images, proprio,
                   frame.cam_poses, T_flange, committed, time.monotonic(), cap_s, delay, prefix)

    def _commit(self, r) -> None:
        """A finished chunk: freeze the committed prefix, anchor, cap, send; advance the planner."""
        agent, env = self.agent, self.env
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
        if agent.ends_event(job.instruction, out.done):
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
        limit = agent.step_cap(self.cfg.max_steps - self.steps - job.committed)
        todo = todo[: max(0, limit)]
        bridge_s = 0.0
        if len(todo):
            st = env.arm.state() if env.arm.connected else None
            if self.anchor is None and st is None:
                self.log.write("chunk_lost", sync=True, chunk=job.chunk_id, why="link down")
                return
            anchor = self.anchor if self.anchor is not None else np.asarray(st.pos[:3], np.float64)
            points = env.targets(todo, anchor)
            t0 = time.perf_counter()
            ticket = env.send(points, self.cfg.rate_hz, job.chunk_id, job.event_index)
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
        advanced = agent.executed(len(todo))
        self.last_chunk = {"chunk": job.chunk_id, "len": len(todo), "infer_ms": r.infer_s * 1e3}
        self.log.write("chunk", sync=True, chunk=job.chunk_id, instruction=job.instruction, event=job.event_index,
                       length=int(out.length), executed=len(todo), skipped_committed=start, committed=job.committed,
                       done=bool(out.done), advanced=advanced, capture_ms=job.capture_s * 1e3, mask_ms=r.mask_s * 1e3,
                       infer_ms=r.infer_s * 1e3, bridge_ms=bridge_s * 1e3, age_ms=age * 1e3, step=self.steps,
                       lead=self.lead.points, injected_delay_s=job.delay_s, inpainted=out.inpainted)
        for k, sec in self.cfg.faults.disconnect:
            if k == job.chunk_id:
                env.arm.unplug(sec)
                self.anchor, self.tape = None, []

    def loop(self) -> str:
        cfg, env = self.cfg, self.env
        self.anchor = env.home(cfg.rate_hz)
        if env.world is not None:
            self.log.write("homed", xyz=self.anchor)
        next_chunk = 0
        started = False  # on-time accounting starts with the first chunk's first point
        drained_since = None
        period = 1.0 / cfg.rate_hz
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
                # 1. the firmware's state
                st, dropped = env.get_state()
                if dropped:
                    self.anchor = None
                    self.tape = []  # the firmware drops its queue when it holds: nothing is committed
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
                    env.follow(last_pos)
                    self.steps += 1
                # 3. a finished chunk
                r = self.worker.poll()
                if r is not None:
                    self._commit(r)
                # 4. trigger the next one
                if (not self.worker.busy and env.arm.connected and st is not None and st.received_at > self.last_send
                        and self.agent.instruction is not None and (not cfg.max_chunks or next_chunk < cfg.max_chunks)):
                    rem = env.remaining(st)
                    due = rem == 0 and st.playing == 0xFFFF if cfg.sync else rem <= self.lead.points
                    if due:
                        job = self._capture(st, next_chunk)
                        if job is not None:
                            self.worker.submit(job)
                            next_chunk += 1
                            if cfg.sync:  # the baseline: nothing moves on until the chunk is there
                                r = self.worker.poll(timeout=30.0)
                                self._commit(r)
                for s in self.subscribers:
                    s.on_step(self, st)
                # 5. the end
                if env.world is not None and env.world.success:
                    return "success"
                if self.steps >= cfg.max_steps or (env.world is not None and env.world.done):
                    return "step limit"
                if (self._no_more_chunks(next_chunk) and st is not None and st.received_at > self.last_send
                        and env.remaining(st) == 0):
                    drained_since = drained_since or now
                    if now - drained_since > 0.1:
                        return "plan done" if self.agent.plan_done else "chunk limit"
        except KeyboardInterrupt:
            return "interrupted"

    def _no_more_chunks(self, next_chunk: int) -> bool:
        """The plan is done (or the chunk limit reached) and nothing is being computed."""
        limit = bool(self.cfg.max_chunks) and next_chunk >= self.cfg.max_chunks
        return (limit or self.agent.plan_done) and not self.worker.busy

    # ---- the end -------------------------------------------------------------------------------------------
    def finish(self, reason: str, error: str = "") -> dict:
        env, agent = self.env, self.agent
        held = False
        if env is not None:
            try:
                held = env.hold()
            except Exception:  # noqa: BLE001 - the report must still be written
                held = False
            self.log.write("hold", sync=True, confirmed=held)
        if self.worker is not None:
            self.worker.close()
        report = {
            "format": "wallwm-run/1",
            "reason": reason,
            "error": error,
            "student": self.student.name if self.student is not None else None,
            "task": self.cfg.task,
            "mode": "unified" if self.cfg.unified else "event",
            "scheduler": "sync" if self.cfg.sync else "async",
            "rtc": "inpaint" if agent is not None and agent.inpaint else "align",
            "rate_hz": self.cfg.rate_hz,
            "steps": self.steps,
            "latency": {s: percentiles(self.stages[s]) for s in STAGES},
            "on_time": {"steps": self.steps_counted, "served": self.steps_on_time,
                        "share": round(self.steps_on_time / self.steps_counted, 4) if self.steps_counted else None},
            "counters": self.counters,
            "hold_confirmed": held,
        }
        if env is not None and env.world is not None:
            w = env.world
            report.update(success=bool(w.success), task_progress=w.progress, events_completed=w.tracker.completed,
                          events_total=w.tracker.total)
        if agent is not None and agent.planner is not None:
            report["events"] = [{"instruction": h.instruction, "start": h.start, "end": h.end, "reason": h.reason}
                                for h in agent.planner.history]
        if env is not None:
            report["link"] = {"disconnects": env.arm.disconnects, "reconnects": env.arm.reconnects,
                              "stats": dict(env.arm.link.stats) if env.arm.link else {}}
        for s in self.subscribers:
            s.on_end(self, reason, report)
        write_report(self.out, report)
        self.log.write("end", sync=True, reason=reason, error=error, success=report.get("success"),
                       task_progress=report.get("task_progress"), on_time=report["on_time"])
        self.log.close()
        if env is not None:
            env.close()
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
