"""The command line: `serve` refuses bad input in one line; `distill --teacher ws://...` labels over loopback
exactly as a local teacher does and writes a student checkpoint; a mismatch or a missing server is one line."""

import subprocess
import sys
import time

import torch

from wallwm_edge.cli import main
from wallwm_edge.model.checkpoint import load_model
from wallwm_edge.serve.process import ServerProcess
from wallwm_edge.train.distill import DistillConfig, Distiller
from wallwm_edge.train.samples import hash_embedder

from serve_helpers import free_port, make_dataset


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("wallwm-edge: error: ") and "Traceback" not in err, err
    return lines[0]


def test_serve_refuses_bad_input_in_one_line(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert "checkpoint not found" in one_error_line(capsys.readouterr().err)
    assert main(["serve", str(tmp_path), "--port", "70000"]) == 2
    assert "not a port number" in one_error_line(capsys.readouterr().err)


def test_serve_refuses_a_taken_port(served_teacher_ckpt, server):
    r = subprocess.run([sys.executable, "-m", "wallwm_edge", "serve", str(served_teacher_ckpt), "--port", str(server.port)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{server.port}" in one_error_line(r.stderr)


def test_remote_labels_equal_local_labels(server, served_teacher_ckpt, serve_dataset, tmp_path):
    cfg = DistillConfig(student_preset="tiny", student_steps=2, samples=24, eval_samples=8, steps=1, batch_size=8, init="scratch", label_batch=16)
    remote = Distiller(server.url, serve_dataset, tmp_path / "remote", cfg, embed=hash_embedder(), progress=False)
    local = Distiller(served_teacher_ckpt, serve_dataset, tmp_path / "local", cfg, embed=hash_embedder(), progress=False)
    assert remote.theader["sha256"] == local.theader["sha256"]
    for k in local.targets:
        torch.testing.assert_close(remote.targets[k], local.targets[k], rtol=1e-5, atol=1e-5, msg=k)
    for k, v in local.student.state_dict().items():  # the same shared buffers (autoencoder, normalizers) and init
        torch.testing.assert_close(remote.student.state_dict()[k], v, msg=k)


def test_distill_from_a_served_teacher_writes_a_student(server, serve_dataset, tmp_path, capsys):
    out = tmp_path / "student"
    rc = main(["distill", "--teacher", server.url, "--data", str(serve_dataset), "--out", str(out), "--samples", "32",
               "--eval-samples", "8", "--steps", "3", "--student-steps", "1", "--text-encoder", "hash", "--label-batch", "16"])
    assert rc == 0, capsys.readouterr().err
    student, header = load_model(out)
    assert student.cfg.flow_steps == 1 and header["distill"]["teacher"]["path"] == server.url
    assert header["distill"]["config"]["init"] == "scratch" and header["distill"]["teacher"]["params"] > 0


def test_distill_refuses_a_mismatched_server_before_any_work(server, tmp_path, capsys):
    other = make_dataset(tmp_path / "ds64", image_size=(48, 48), episodes=2)
    rc = main(["distill", "--teacher", server.url, "--data", str(other), "--out", str(tmp_path / "s"), "--text-encoder", "hash"])
    line = one_error_line(capsys.readouterr().err)
    assert rc == 2 and server.url in line and "image_size [32, 32], this run has [48, 48]" in line
    assert not (tmp_path / "s").exists()
    rc = main(["distill", "--teacher", server.url, "--data", str(other), "--out", str(tmp_path / "s"), "--init", "slice"])
    assert rc == 2


def test_distill_refuses_slice_init_from_a_served_teacher(server, serve_dataset, tmp_path, capsys):
    rc = main(["distill", "--teacher", server.url, "--data", str(serve_dataset), "--out", str(tmp_path / "s"), "--init", "slice",
               "--text-encoder", "hash"])
    assert rc == 2 and "cannot be sliced" in one_error_line(capsys.readouterr().err)


def test_distill_with_no_server_is_one_line_in_bounded_time(serve_dataset, tmp_path, capsys):
    url = f"ws://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    rc = main(["distill", "--teacher", url, "--data", str(serve_dataset), "--out", str(tmp_path / "s"), "--teacher-retries", "1",
               "--teacher-timeout", "2", "--text-encoder", "hash"])
    line = one_error_line(capsys.readouterr().err)
    assert rc == 2 and url in line and "connection refused" in line and time.monotonic() - t0 < 20


def test_the_server_stops_cleanly_on_sigterm(served_teacher_ckpt):
    s = ServerProcess(served_teacher_ckpt)
    err = s.stop()
    assert s.proc.returncode == 0 and "stopped: 0 requests" in err and "Traceback" not in err
