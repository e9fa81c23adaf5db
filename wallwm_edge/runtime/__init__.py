"""wallwm_edge.runtime: the on-board loop (`wallwm-edge run` / `demo`), importable and runnable without torch.

    loop.py        RunConfig, Runtime: the control loop, its end conditions, the report (start here)
    environment.py the environment: simulated cell or robot (cameras + arm link), observation and action
    agent.py       the agent: the student and its planner (what to ask next, what a chunk means for the plan)
    subscribers.py status line, GIF, latency plot
    sources.py     camera sources behind one ABC: simulated rig, OpenCV capture devices, image folders
    engine.py      the exported student (ONNX + sidecar) on onnxruntime CPU or TensorRT; RTC inpainting
    masks.py       sight-cone masks: cached for fixed cameras, per pose for the wrist camera
    scheduler.py   inference worker thread, lead estimate, committed-prefix alignment
    actuation.py   policy actions -> firmware EE targets; the simulated firmware's arm -> Meta-World hand
    arm.py         the bridge session: simulated firmware on a pty by default, disconnect detection, reconnect
    planner.py     the Planner interface; next-event instructions from a plan file, the event registry or a prompt
    progress.py    Task Progress of the simulated cell: which of a task's events the rollout has completed
    report.py      JSONL log, latency percentiles and histogram, captioned multi-view GIF
    cli.py         `wallwm-edge run` and `wallwm-edge demo`
"""
