"""Real signals against real compress processes: Ctrl-C, SIGTERM, kill -9 (also in the middle of a
checkpoint write), then ``--resume``; and a second run on a folder that is still in use."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import KILL_AT_CHECKPOINT, transformers_major

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

# compress through the library with small checkpoints (the CLI keeps the Trainer's 200-step default);
# KILL_AT=<stage>:<n> kills this process with SIGKILL at the n-th checkpoint of that fine-tune,
# after the weights and optimizer are written but before trainer_state.json: a torn checkpoint.
DRIVER = r"""
import os, signal, sys
from pathlib import Path
from transformers import Trainer
from sensi_edge.compress import CompressConfig, compress
from sensi_edge.finetune import Recipe

model, data, out, resume = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4] == "1"
""" + KILL_AT_CHECKPOINT + r"""
after = os.environ.get("KILL_AFTER_TRAINING")  # SIGKILL once that fine-tune has finished, before its stage is saved
if after:
    real_train = Trainer.train
    def train_then_die(self, *a, **k):
        out = real_train(self, *a, **k)
        if f"ckpt-{after}" in str(self.args.output_dir):
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    Trainer.train = train_then_die
hold = os.environ.get("HOLD_UNTIL")  # a file: the run waits at its sensitivity stage until it exists
if hold:
    import time
    import sensi_edge.sensitivity as sens
    real_analyse = sens.analyse
    def held(*a, **k):
        while not os.path.exists(hold):
            time.sleep(0.05)
        return real_analyse(*a, **k)
    sens.analyse = held
cfg = CompressConfig(task="sst2", data=data, output=out, model=model, budget=0.5, max_seq_length=32,
                     recipe=Recipe(epochs=float(os.environ.get("EPOCHS", "3")), batch_size=8, save_steps=2, seed=5),
                     calibration_samples=8)
compress(cfg, resume=resume, log=lambda m: print(m, file=sys.stderr, flush=True))
"""


_STARTED: list[subprocess.Popen] = []


def _default_sigint():
    """A pytest started with ``&`` from a shell without job control has SIGINT ignored, and children inherit that:
    the runs under test then never see the Ctrl-C the tests send. Give them the disposition a terminal gives."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _popen(argv, env):
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=_default_sigint)
    _STARTED.append(p)
    return p


@pytest.fixture(autouse=True)
def _no_run_outlives_its_test():
    """A test that fails on a timeout must not leave its run behind, training beside every later test."""
    yield
    while _STARTED:
        p = _STARTED.pop()
        if p.poll() is None:
            p.kill()
            p.wait()


def _driver(model, data, out, resume=False, **env):
    return _popen([sys.executable, "-c", DRIVER, str(model), str(data), str(out), "1" if resume else "0"], {**ENV, **env})


def _cli(*args):
    return _popen([sys.executable, "-m", "cli.main", *args], ENV)


def _wait_for(predicate, proc, timeout=120.0):
    start = time.monotonic()
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"process ended early ({proc.returncode}): {proc.stderr.read()[-1500:]}")
        if time.monotonic() - start > timeout:
            proc.kill()
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def _summary(out: Path) -> dict:
    r = json.loads((out / "report.json").read_text())
    return {"plan": r["plan"], "compressed": r["compressed"], "dense": r["dense_baseline"]}


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tmp_path_factory):
    """One uninterrupted run: (data folder, its run folder) -- what every interrupted-and-resumed run
    must reproduce."""
    from conftest import sentiment_rows, write_jsonl

    d = tmp_path_factory.mktemp("data")
    write_jsonl(d / "train.jsonl", sentiment_rows(48))
    write_jsonl(d / "validation.jsonl", sentiment_rows(16, seed=1))
    out = tmp_path_factory.mktemp("ref") / "run"
    p = _driver(tiny_model_dir, d, out)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-2000:]
    return d, out


def _train_info(out: Path, stage: str) -> dict:
    return json.loads((out / ("baseline.json" if stage == "baseline" else "trim.json")).read_text())["train"]


@pytest.mark.xfail(transformers_major() >= 5, strict=False,
                   reason="on transformers 5.24 a resumed fine-tune completes but its loss differs from the "
                          "uninterrupted run's (README: known limits)")
@pytest.mark.parametrize("stage,n", [("baseline", 3), ("trim", 2)])
def test_kill_during_checkpoint_write_then_resume_reproduces(reference, tiny_model_dir, tmp_path, stage, n):
    data, ref = reference
    out = tmp_path / "run"
    p = _driver(tiny_model_dir, data, out, KILL_AT=f"{stage}:{n}")
    p.communicate(timeout=300)
    assert p.returncode == -signal.SIGKILL
    partial = tmp_path / "run.partial"
    torn = sorted((partial / f"ckpt-{stage}").glob("checkpoint-*"), key=lambda c: int(c.name.split("-")[1]))
    assert torn and not (torn[-1] / "trainer_state.json").exists()  # the kill really tore a checkpoint
    p = _driver(tiny_model_dir, data, out, resume=True)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-2000:]
    assert _summary(out) == _summary(ref)  # same plan, same dense and compressed metrics
    report = json.loads((out / "report.json").read_text())
    assert report["sessions"] == 2
    info = _train_info(out, stage)
    assert info["resumed_from_step"] == 2 * (n - 1)  # the torn checkpoint was skipped, the one before it used
    # the whole fine-tune's mean loss, not this session's losses over all steps (the Trainer's own number)
    assert info["train_loss"] == pytest.approx(_train_info(ref, stage)["train_loss"], abs=2e-3)


def test_kill_after_a_fine_tune_finished_resumes_from_its_final_checkpoint(reference, tiny_model_dir, tmp_path):
    data, ref = reference
    out = tmp_path / "run"
    p = _driver(tiny_model_dir, data, out, KILL_AFTER_TRAINING="baseline")
    p.communicate(timeout=300)
    assert p.returncode == -signal.SIGKILL
    p = _driver(tiny_model_dir, data, out, resume=True)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-2000:]
    info, want = _train_info(out, "baseline"), _train_info(ref, "baseline")
    assert info["resumed_from_step"] == want["steps"]  # nothing left to train
    assert info["train_loss"] == pytest.approx(want["train_loss"], abs=2e-3)
    assert _summary(out) == _summary(ref)


def test_sigkill_between_stages_then_resume_reproduces(reference, tiny_model_dir, tmp_path):
    data, ref = reference
    out = tmp_path / "run"
    partial = tmp_path / "run.partial"
    p = _driver(tiny_model_dir, data, out)
    _wait_for(lambda: (partial / "plan.json").exists(), p)
    p.kill()
    p.wait()
    timings = json.loads((partial / "timings.json").read_text())
    assert timings["baseline"] > 0  # finished stages' times are persisted as they go
    p = _driver(tiny_model_dir, data, out, resume=True)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-2000:]
    assert _summary(out) == _summary(ref)
    assert "== baseline" not in err and "== sensitivity" not in err  # finished stages were not redone


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_keeps_the_run_and_says_how_to_resume(reference, tiny_model_dir, tmp_path, sig):
    data, ref = reference
    out = tmp_path / "run"
    partial = tmp_path / "run.partial"
    args = ["compress", "--model", str(tiny_model_dir), "--task", "sst2", "--data", str(data), "--output", str(out),
            "--budget", "0.5", "--max-seq-length", "32", "--epochs", "300", "--batch-size", "8",
            "--calibration-samples", "8", "--seed", "5"]
    p = _cli(*args)
    _wait_for(lambda: (partial / "run.json").exists() and (partial / "timings.json").exists(), p)
    time.sleep(1.0)  # inside the dense fine-tune
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err[-1500:]
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "--resume" in lines[0] and str(partial) in lines[0]
    assert "Traceback" not in err
    assert (partial / "run.json").exists() and not out.exists()  # kept, nothing published


def test_second_run_on_a_busy_folder_is_refused_and_the_first_finishes(reference, tiny_model_dir, tmp_path):
    data, _ = reference
    out = tmp_path / "run"
    partial = tmp_path / "run.partial"
    release = tmp_path / "release"
    first = _driver(tiny_model_dir, data, out, HOLD_UNTIL=str(release))
    _wait_for(lambda: (partial / "baseline.json").exists(), first)  # now held before its sensitivity stage
    for resume in ([], ["--resume"]):
        second = _cli("compress", "--model", str(tiny_model_dir), "--task", "sst2", "--data", str(data), "--output",
                      str(out), "--budget", "0.5", "--max-seq-length", "32", "--calibration-samples", "8",
                      "--batch-size", "8", "--seed", "5", *resume)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2, err[-1500:]
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "still working" in lines[0] and str(first.pid) in lines[0], lines
    assert first.poll() is None
    release.touch()
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["sessions"] == 1 and report["recipe"]["epochs"] == 3
    assert not partial.exists() and not (out / ".lock").exists()


def test_sigint_at_a_stage_boundary_then_resume_reproduces(reference, tiny_model_dir, tmp_path):
    data, ref = reference
    out, partial, release = tmp_path / "run", tmp_path / "run.partial", tmp_path / "release"
    p = _driver(tiny_model_dir, data, out, HOLD_UNTIL=str(release))
    _wait_for(lambda: (partial / "baseline.json").exists(), p)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode != 0 and "Interrupted" in err and "--resume" in err
    assert (partial / "dense_model" / "config.json").exists() and not out.exists()
    p = _driver(tiny_model_dir, data, out, resume=True)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-2000:]
    assert _summary(out) == _summary(ref) and "== baseline" not in err
