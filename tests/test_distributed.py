"""compress under torchrun (2 CPU processes, gloo): the same plan as one process with the same global batch,
the sensitivity sums split over ranks equal to one process's, resume after a kill, and the commands that
must not run under a launcher refusing it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from conftest import KILL_AT_CHECKPOINT, sentiment_rows, tiny_config, write_jsonl

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
for _name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
    ENV.pop(_name, None)

# compress through the library with checkpoints every 2 steps; KILL_AT=<stage>:<n> kills rank 0 with SIGKILL
# at the n-th checkpoint of that fine-tune (weights written, trainer_state.json not yet): a torn checkpoint.
DRIVER = r"""
import os, signal, sys
from pathlib import Path
from transformers import Trainer
from sensi_edge.compress import CompressConfig, compress
from sensi_edge.finetune import Recipe

model, data, out, resume, batch = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5])
""" + KILL_AT_CHECKPOINT + r"""
cfg = CompressConfig(task="sst2", data=data, output=out, model=model, budget=0.5, max_seq_length=32,
                     recipe=Recipe(epochs=2, batch_size=batch, save_steps=2, seed=5), calibration_samples=32,
                     keep_intermediate=True)
compress(cfg, resume=resume, log=lambda m: print(m, file=sys.stderr, flush=True))
"""

# the sensitivity analysis alone, on a fixed model and fixed calibration batches, in however many processes
ANALYSE = r"""
import json, sys
import torch
from sensi_edge import distributed
from sensi_edge.loading import load_for_task
from sensi_edge.sensitivity import analyse
from sensi_edge.tasks import get_task

sys.path.insert(0, sys.argv[3])
from conftest import label_with_own_predictions, model_and_batches

distributed.join()
model, batches = model_and_batches(seed=3)
batches = label_with_own_predictions(model, batches) * 3  # 6 batches: 3 per rank
report = analyse(model, batches, 0.5)
if distributed.world().is_main:
    report.save(sys.argv[1])
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny BERT without dropout (so one process and two train on exactly the same numbers) and 96 rows."""
    import torch
    from transformers import AutoTokenizer, BertModel

    from sensi_edge.loading import default_model_path

    root = tmp_path_factory.mktemp("ddp")
    cfg = tiny_config()
    cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0.0
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(root / "model")
    AutoTokenizer.from_pretrained(default_model_path()).save_pretrained(root / "model")
    write_jsonl(root / "data" / "train.jsonl", sentiment_rows(96))
    write_jsonl(root / "data" / "validation.jsonl", sentiment_rows(16, seed=1))
    (root / "driver.py").write_text(DRIVER)
    return root


def _run(setup, out, procs, batch=16, resume=False, **env):
    cmd = [str(setup / "driver.py"), str(setup / "model"), str(setup / "data"), str(out), "1" if resume else "0",
           str(batch)]
    if procs > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", *cmd]
    else:
        cmd = [sys.executable, *cmd]
    return subprocess.run(cmd, env={**ENV, **env}, capture_output=True, text=True, timeout=600)


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != "timings.json"}


@pytest.fixture(scope="module")
def one_and_two(setup):
    one, two = setup / "one", setup / "two"
    for out, procs in ((one, 1), (two, 2)):
        res = _run(setup, out, procs)
        assert res.returncode == 0, res.stderr[-3000:]
    return one, two


def test_two_processes_make_the_plan_of_one_with_the_same_global_batch(one_and_two):
    one, two = one_and_two
    r1, r2 = (json.loads((o / "report.json").read_text()) for o in (one, two))
    assert (r1["world_size"], r2["world_size"]) == (1, 2)
    assert r2["device_type"] == "cpu" and r2["precision"] == "fp32"
    assert r1["recipe_steps"] == r2["recipe_steps"]  # --batch-size is the global batch
    assert r1["plan"] == r2["plan"]
    s1, s2 = r1["sensitivity"]["group_scores"], r2["sensitivity"]["group_scores"]
    assert s1.keys() == s2.keys()
    # same rows per step, no dropout: the fine-tunes differ only by float summation order (DDP averages two
    # half-batch gradients), which the 2 x 2 fine-tune steps carry into the scores
    for k in s1:
        assert s2[k] == pytest.approx(s1[k], abs=2e-3), k
    # rank 1 wrote nothing outside the checkpoints (which are removed): both folders hold the same files
    assert _files(one) == _files(two)


def test_accelerate_launch_runs_the_same_pipeline(setup, one_and_two):
    """accelerate's multi-process launcher (torchrun underneath; --multi_gpu is its flag for it, and it forms a
    gloo group on a CPU-only machine too) gives the same run as torchrun."""
    out = setup / "accelerate"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           str(setup / "driver.py"), str(setup / "model"), str(setup / "data"), str(out), "0", "16"]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    r, ref = (json.loads((o / "report.json").read_text()) for o in (out, one_and_two[1]))
    assert r["world_size"] == 2 and r["plan"] == ref["plan"]


def test_the_two_process_model_reloads_and_scores_as_reported(one_and_two):
    from transformers import AutoTokenizer

    from sensi_edge.data import load_task_data
    from sensi_edge.loading import load_for_task
    from sensi_edge.runners import TorchRunner
    from sensi_edge.tasks import get_task
    from sensi_edge.tasks.evaluators import evaluator_for

    two = one_and_two[1]
    report = json.loads((two / "report.json").read_text())
    _, val, task = load_task_data(report["data"], get_task("sst2"))
    _, model = load_for_task(str(two / "model"), task)
    ev = evaluator_for(task, AutoTokenizer.from_pretrained(str(two / "model")), 32, 16)
    assert ev.score(TorchRunner(model), ev.prepare(val)).metrics == report["compressed"]
    from sensi_edge.arch import adapter_for

    geometry = adapter_for(model).geometry(model)
    assert [list(geometry.heads), list(geometry.ffn)] == [report["plan"]["heads_per_layer"],
                                                          report["plan"]["ffn_per_layer"]]


def test_sensitivity_split_over_two_ranks_equals_one_process(tmp_path):
    from sensi_edge.artifacts import SensitivityReport

    script = tmp_path / "analyse.py"
    script.write_text(ANALYSE)
    tests = str(Path(__file__).resolve().parent)
    outs = {}
    for procs in (1, 2):
        out = tmp_path / f"sens{procs}.json"
        cmd = [str(script), str(out), "x", tests]
        cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", *cmd]
               if procs > 1 else [sys.executable, *cmd])
        res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        outs[procs] = SensitivityReport.load(out)
    one, two = outs[1], outs[2]
    assert two.calibration_rows == one.calibration_rows
    assert two.dense_loss == pytest.approx(one.dense_loss, rel=1e-9)
    for g1, g2 in zip(one.groups, two.groups):
        assert (g1.layer, g1.kind) == (g2.layer, g2.kind)
        assert g2.score == pytest.approx(g1.score, abs=1e-9)
    for a, b in zip(one.head_importance + one.neuron_importance, two.head_importance + two.neuron_importance):
        assert b == pytest.approx(a, rel=1e-9, abs=1e-15)


# registered before join(), so it runs after join's own exit handler (atexit is last-in, first-out)
LEAVE = r"""
import atexit, sys
import torch.distributed as dist
from sensi_edge import distributed

def seen():
    open(sys.argv[1] + f".{distributed.world().rank}", "w").write(str(dist.is_initialized()))

atexit.register(seen)
distributed.join()
distributed.barrier()
"""


def test_each_rank_tears_the_group_down_before_exit(tmp_path):
    """Left to interpreter exit, gloo's threads abort the process (SIGABRT) in about a third of short runs
    on this machine, which the launcher reports as a failure; join() must leave the group at exit."""
    script = tmp_path / "leave.py"
    script.write_text(LEAVE)
    mark = tmp_path / "initialised"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(mark)]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [Path(f"{mark}.{r}").read_text() for r in (0, 1)] == ["False", "False"]


def test_a_killed_two_process_run_resumes_with_resume(setup, one_and_two):
    out = setup / "killed"
    first = _run(setup, out, 2, KILL_AT="trim:2")
    assert first.returncode != 0
    partial = setup / "killed.partial"
    assert (partial / "plan.json").is_file() and not out.exists()
    again = _run(setup, out, 2, resume=True)
    assert again.returncode == 0, again.stderr[-3000:]
    r, ref = (json.loads((o / "report.json").read_text()) for o in (out, one_and_two[1]))
    assert r["sessions"] == 2 and r["world_size"] == 2
    assert r["plan"] == ref["plan"]
    assert r["compressed"] == ref["compressed"]


@pytest.mark.parametrize("args", [["export", "m", "--onnx", "--output", "o"], ["evaluate", "m", "--task", "sst2", "--data", "d"],
                                  ["bench", "m"], ["bundle", "m", "--output", "o"], ["report", "x.json"]])
def test_single_process_commands_refuse_a_launcher(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert "runs in one process, but this is rank 1 of 2" in res.stderr and "Traceback" not in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_launch_settings_that_cannot_work_are_refused(tmp_path, monkeypatch, tiny_model_dir, tiny_sst2_dir):
    base = ["compress", "--model", str(tiny_model_dir), "--task", "sst2", "--data", str(tiny_sst2_dir),
            "--output", str(tmp_path / "out")]
    res = CliRunner().invoke(app, base + ["--bf16", "--fp16"])
    assert res.exit_code == 2 and "--bf16 and --fp16 both given" in res.stderr
    import torch

    if not torch.cuda.is_available():
        res = CliRunner().invoke(app, base + ["--fp16"])
        assert res.exit_code == 2 and "--fp16 needs a CUDA GPU" in res.stderr
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    res = CliRunner().invoke(app, base + ["--batch-size", "15"])
    assert res.exit_code == 2 and "make it a multiple of 2" in res.stderr, res.stderr
    assert not any(tmp_path.glob("out*"))


def test_bf16_fine_tunes_and_the_model_after_them_runs_in_fp32(tiny_model_dir, tiny_sst2_dir, tmp_path):
    """Mixed precision patches the model's forward with autocast; unwrapped after each fine-tune, the masked
    model and the pruned one agree as in fp32 (the parity gate failed at 1.8e-2 before)."""
    from sensi_edge.compress import CompressConfig, compress
    from sensi_edge.finetune import Recipe

    r = compress(CompressConfig(task="sst2", data=str(tiny_sst2_dir), output=tmp_path / "bf16", model=str(tiny_model_dir),
                                recipe=Recipe(epochs=1, batch_size=8, precision="bf16"), calibration_samples=8),
                 log=lambda m: None).report
    assert r["precision"] == "bf16" and r["recipe"]["precision"] == "bf16"
    assert r["masked_vs_pruned_max_abs_diff"] < 1e-4
    # accelerate keeps a process's first mixed precision in a process-wide state: the next fp32 run in this
    # process must train in fp32 again (it trained in bf16 and failed its parity gate before the reset)
    import torch
    from transformers import Trainer

    seen = []
    real = Trainer.training_step

    def spy(self, *a, **k):
        seen.append((self.accelerator.mixed_precision, torch.is_autocast_enabled("cpu")))
        return real(self, *a, **k)

    try:
        Trainer.training_step = spy
        r2 = compress(CompressConfig(task="sst2", data=str(tiny_sst2_dir), output=tmp_path / "fp32", model=str(tiny_model_dir),
                                     recipe=Recipe(epochs=1, batch_size=8), calibration_samples=8), log=lambda m: None).report
    finally:
        Trainer.training_step = real
    assert seen and all(mp == "no" for mp, _ in seen), seen
    assert r2["masked_vs_pruned_max_abs_diff"] < 1e-4
