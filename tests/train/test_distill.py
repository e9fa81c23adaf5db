"""Distillation on the tiny preset: it lowers the student's error against the teacher, resumes exactly,
loads our checkpoints and external ones through a key map, and refuses a shape mismatch by name."""

import json

import pytest
import torch

from wallwm_edge.cli import main
from wallwm_edge.errors import ConfigError
from wallwm_edge.model.checkpoint import load_model
from wallwm_edge.train.distill import DistillConfig, Distiller, KeyMap, load_teacher
from wallwm_edge.train.samples import hash_embedder
from wallwm_edge.train.trainer import TrainConfig, Trainer


@pytest.fixture(scope="module")
def teacher_run(synthetic_dataset, tmp_path_factory):
    """A tiny teacher (4 flow steps) trained briefly on the synthetic dataset."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("teacher")
    tcfg = TrainConfig(preset="tiny", steps=30, batch_size=8, warmup=5, model_overrides=(("flow_steps", 4),))
    Trainer(synthetic_dataset, out, tcfg, embed=hash_embedder(), progress=False).run()
    return out


def dcfg(**kw):
    base = dict(student_preset="tiny", student_steps=1, samples=96, eval_samples=32, steps=80, batch_size=16, lr=3e-3,
                warmup=5, ckpt_every=40, init="scratch")
    return DistillConfig(**(base | kw))


def test_distillation_lowers_student_error_against_teacher(teacher_run, synthetic_dataset, tmp_path):
    d = Distiller(teacher_run, synthetic_dataset, tmp_path / "s", dcfg(), embed=hash_embedder(), progress=False, text_encoder="hash")
    assert (d.K, d.S) == (4, 1)
    r = d.run()
    before, after = r["initial"], r["final"]
    assert after["action_mse"] < 0.3 * before["action_mse"], (before, after)
    assert after["action_cosine_mean"] > before["action_cosine_mean"]
    assert after["end_prob_abs"] < before["end_prob_abs"]
    # the result is an ordinary checkpoint with the student's config and its provenance
    student, header = load_model(tmp_path / "s")
    assert student.cfg.flow_steps == 1 and header["distill"]["teacher"]["preset"] == "tiny"
    assert header["text_encoder"] == "hash" and header["distill"]["history"][-1]["step"] == 80


def test_resume_continues_exactly(teacher_run, synthetic_dataset, tmp_path):
    full = Distiller(teacher_run, synthetic_dataset, tmp_path / "full", dcfg(steps=40, ckpt_every=20), embed=hash_embedder(), progress=False)
    full.run()
    part = Distiller(teacher_run, synthetic_dataset, tmp_path / "part", dcfg(steps=40, ckpt_every=20), embed=hash_embedder(), progress=False)
    part.run(until=20)
    targets = tmp_path / "part" / "train_teacher_targets.safetensors"
    mtime = targets.stat().st_mtime_ns
    resumed = Distiller(teacher_run, synthetic_dataset, tmp_path / "part", None, embed=hash_embedder(), progress=False, resume=True)
    assert resumed.step == 20
    resumed.run()
    assert targets.stat().st_mtime_ns == mtime  # teacher targets reused, not recomputed
    a, b = full.student.state_dict(), resumed.student.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_shape_mismatch_is_refused_naming_key_and_shapes(teacher_run, tmp_path):
    from safetensors.torch import load_file, save_file

    src = teacher_run / "model.safetensors"
    state = load_file(str(src))
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata()
    state["action_out.weight"] = torch.zeros(4, 48)  # the model expects (4, 32)
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad), metadata=meta)
    with pytest.raises(ConfigError, match=r"key 'action_out.weight' has shape \[4, 48\] in the checkpoint.*expects \[4, 32\]"):
        load_teacher(bad)


def test_external_checkpoint_loads_through_a_key_map(teacher_run, tmp_path):
    teacher, _ = load_teacher(teacher_run)
    ext = tmp_path / "external.pt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in teacher.state_dict().items()} | {"optimizer.lr": torch.tensor(1.0)}}, ext)
    with pytest.raises(ConfigError, match="--teacher-config"):
        load_teacher(ext)
    with pytest.raises(ConfigError, match="missing.*key map"):
        load_teacher(ext, config=teacher.cfg)
    km = tmp_path / "keymap.json"
    km.write_text(json.dumps({"rules": [["^model\\.", ""]], "drop": ["^optimizer\\."]}))
    loaded, header = load_teacher(ext, KeyMap.load(km), config=teacher.cfg)
    assert header["external"] is True
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    with pytest.raises(ConfigError, match="unknown key-map field"):
        km.write_text(json.dumps({"rename": []}))
        KeyMap.load(km)


def test_distill_cli_end_to_end_and_clear_errors(teacher_run, synthetic_dataset, tmp_path, capsys):
    rc = main(["distill", "--teacher", str(teacher_run), "--data", str(synthetic_dataset), "--out", str(tmp_path / "cli"),
               "--preset", "tiny", "--student-steps", "2", "--samples", "32", "--eval-samples", "8", "--steps", "5",
               "--text-encoder", "hash", "--threads", "1"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 5 and summary["teacher_steps"] == 4 and summary["student_steps"] == 2
    assert main(["distill", "--teacher", str(tmp_path / "nope"), "--data", str(synthetic_dataset), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "teacher checkpoint not found" in err and "Traceback" not in err
    rc = main(["distill", "--teacher", str(teacher_run), "--data", str(synthetic_dataset), "--out", str(tmp_path / "y"),
               "--preset", "tiny", "--student-steps", "3", "--text-encoder", "hash"])
    assert rc == 2 and "multiple of student steps 3" in capsys.readouterr().err


def test_warm_start_from_a_previous_student_and_slice_init(teacher_run, synthetic_dataset, tmp_path):
    first = Distiller(teacher_run, synthetic_dataset, tmp_path / "a", dcfg(steps=30), embed=hash_embedder(), progress=False)
    first.run()
    warm = Distiller(teacher_run, synthetic_dataset, tmp_path / "b", dcfg(steps=1, init=str(tmp_path / "a")), embed=hash_embedder(), progress=False)
    for k, v in first.student.state_dict().items():
        torch.testing.assert_close(warm.student.state_dict()[k], v)
    sliced = Distiller(teacher_run, synthetic_dataset, tmp_path / "c", dcfg(steps=1, init="slice"), embed=hash_embedder(), progress=False)
    t = sliced.teacher.state_dict()
    torch.testing.assert_close(sliced.student.state_dict()["action_out.weight"], t["action_out.weight"])  # same preset: a copy
    with pytest.raises(ConfigError, match="init must be"):
        Distiller(teacher_run, synthetic_dataset, tmp_path / "d", dcfg(init="nowhere"), embed=hash_embedder(), progress=False)


def test_auto_student_fits_the_teacher_and_a_no_op_is_refused_with_the_remedy():
    from wallwm_edge.model.presets import resolve
    from wallwm_edge.train.distill import resolve_student

    data = dict(views=("a", "b"), image_size=(32, 32), action_dim=4, proprio_dim=4)
    tiny, teacher = resolve("tiny", **data), resolve("teacher", **data)
    assert resolve_student(tiny, "auto", None, tiny.flow_steps) == ("tiny", 1)  # tiny teacher (2 steps): 2 -> 1, not 2 -> 2
    assert resolve_student(teacher, "auto", None, teacher.flow_steps) == ("student", 2)
    assert resolve_student(tiny, None, None, 4) == ("tiny", 2)
    assert resolve_student(teacher, "student", 10, 10) == ("student", 10)  # narrower student: still a reduction
    with pytest.raises(ConfigError, match=r"student steps 2 >= teacher steps 2 .*pass --student-steps 1"):
        resolve_student(tiny, "tiny", 2, 2)


def test_student_preset_that_does_not_fit_names_the_preset_that_does(teacher_run):
    from wallwm_edge.train.distill import make_student

    teacher, _ = load_teacher(teacher_run)
    with pytest.raises(ConfigError, match=r"width 96, depth 3.*does not fit .*pass --preset tiny"):
        make_student(teacher, "student", 1)


def test_the_student_takes_the_teachers_latent_space_and_horizon(teacher_run):
    import dataclasses

    from wallwm_edge.model.denoiser import WallWM
    from wallwm_edge.train.distill import make_student

    teacher, _ = load_teacher(teacher_run)
    wide = WallWM(dataclasses.replace(teacher.cfg, latent_dim=24, width=64, depth=2, name="custom"))
    s = make_student(wide, "tiny", 1)  # tiny's own latent_dim (8) would not share the teacher's autoencoder
    assert (s.cfg.latent_dim, s.cfg.patch, s.cfg.horizon) == (24, wide.cfg.patch, wide.cfg.horizon)
    assert torch.equal(s.ae.components, wide.ae.components)


def test_distill_cli_defaults_fit_a_tiny_teacher(teacher_run, synthetic_dataset, tmp_path, capsys):
    rc = main(["distill", "--teacher", str(teacher_run), "--data", str(synthetic_dataset), "--out", str(tmp_path / "auto"),
               "--samples", "16", "--eval-samples", "8", "--steps", "2", "--text-encoder", "hash", "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["teacher_steps"] == 4 and summary["student_steps"] == 2
    student, header = load_model(tmp_path / "auto")
    assert student.cfg.name == "tiny" and student.cfg.flow_steps == 2
    assert header["distill"]["config"]["student_preset"] == "tiny" and header["distill"]["config"]["student_steps"] == 2
