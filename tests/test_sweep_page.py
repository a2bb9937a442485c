"""The sweep page is what users compare methods by: its tables, verdicts and collapse flags must follow
the per-run reports (a wrong 'best' mark or a missed majority-class collapse would mislead)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from benchmarks import sweep_methods
from conftest import SHARED_DATA

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "rt-polarity").is_dir(), reason="needs ../shared/data")


def _report(data: Path, task: dict, metric: str, method: str, budget: float, seed: int, value: float,
            dense: float, kept: float) -> dict:
    return {"data": str(data), "task": task, "metric": metric, "method": method, "budget": {"value": budget},
            "recipe": {"seed": seed, "epochs": 2.0, "learning_rate": 5e-5, "batch_size": 32},
            "rows": {"train": 2000, "validation": 1000}, "dense_baseline": {metric: dense},
            "compressed": {metric: value}, "params": {"encoder_ratio": kept},
            "wall_seconds": {"total": 60.0, "warmup": 10.0, "sensitivity": 20.0},
            "sweep_settings": {"task": task["name"], "max_train_samples": 2000, "epochs": 2.0},
            "run_folder": f"/nowhere/{method}_{budget}_{seed}"}


@pytest.fixture
def sweep_dir(tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    out.mkdir()
    monkeypatch.setattr(sweep_methods, "OUT", out)
    monkeypatch.setattr(sweep_methods, "PAGE", tmp_path / "sweep.md")
    cls = {"name": "sst2", "kind": "classification"}
    rows = [("sensitivity", 0.5, 42, 80.0), ("sensitivity", 0.5, 43, 82.0),
            ("uniform", 0.5, 42, 75.0), ("uniform", 0.5, 43, 59.8)]  # seed 43 answers the majority class
    for method, budget, seed, value in rows:
        r = _report(SHARED_DATA / "rt-polarity", cls, "accuracy", method, budget, seed, value, 85.0, 0.5)
        (out / f"rt-polarity_{method}_b{budget}_s{seed}.json").write_text(json.dumps(r))
    qa = {"name": "squad", "kind": "qa"}
    for method, seed, value in [("sensitivity", 42, 30.0), ("sensitivity", 43, 32.0), ("magnitude", 42, 40.0),
                                ("magnitude", 43, 36.0)]:
        r = _report(SHARED_DATA / "squad-v1.1-dev", qa, "f1", method, 0.3, seed, value, 50.0, 0.3)
        (out / f"squad-v1.1-dev_{method}_b0.3_s{seed}.json").write_text(json.dumps(r))
    latency = {"settings": {"seq_len": 384}, "wall_seconds_exports_and_bench": 120.0, "seed": 42,
               "results": [{"label": "dense-pytorch-fp32", "median_ms": 40.0, "int8_metric": None},
                           {"label": "dense", "median_ms": 20.0, "int8_metric": 49.0},
                           {"label": "sensitivity@0.3", "median_ms": 10.0, "int8_metric": 29.5}]}
    (out / "latency_squad-v1.1-dev.json").write_text(json.dumps(latency))
    full = {"metric": "f1", "dense_baseline": {"f1": 120.0}, "rows": {"train": 7363, "validation": 1000},
            "task": {"name": "squad"},
            "recipe": {"epochs": 1.0, "learning_rate": 1e-4}, "command": "sensi-edge compress --task squad"}
    (tmp_path / "compress_squad-v1.1-dev.json").write_text(json.dumps(full))
    # rt-polarity's full run: 85 dense against 59.80 majority; the sweep's 85.0 is all the way there
    full_cls = {**full, "metric": "accuracy", "dense_baseline": {"accuracy": 85.0}, "task": {"name": "sst2"}}
    (tmp_path / "compress_rt-polarity.json").write_text(json.dumps(full_cls))
    return tmp_path


def test_page_marks_best_ranks_sensitivity_and_flags_collapses(sweep_dir):
    sweep_methods.summary()
    page = (sweep_dir / "sweep.md").read_text()
    assert "| 0.5 | sensitivity | 50.0% | **81.00 +- 1.00** | -4.00 |" in page
    assert "| 0.5 | uniform | 50.0% | 67.40 +- 7.60 | -17.60 |" in page
    assert "budget 0.5: best sensitivity (81.00); sensitivity ranks 1 of 2" in page
    assert "Majority-class accuracy of this validation split: 59.80" in page
    assert "learnt nothing usable: uniform@0.5 seed 43." in page
    # a partial grid says what it lacks instead of passing for a finished task
    assert page.count("**Incomplete**: missing 32 of the 36 runs of the full grid") == 2
    assert page.count("and the int8 latency bench; `python -m benchmarks.sweep_methods --tasks rt-polarity --seeds 42 43 "
                      "--max-train-samples 2000 --epochs 2` resumes it.") == 1
    # squad's bench predates its magnitude run: named, not passed over
    assert "and the int8 latency of 1 seed-42 models (magnitude@0.3);" in page
    # QA: the metric is F1, latency at seq 384, speed-up against the dense PyTorch model of the same bench
    assert "| budget | method | encoder params kept | f1 | vs dense | int8 ms @ seq 384, seed 42" in page
    assert "| 0.3 | sensitivity | 30.0% | 31.00 +- 1.00 | -19.00 | 10.00 (4.0x) | 29.50 |" in page
    assert "best magnitude (38.00); sensitivity ranks 2 of 2 (31.00, -7.00 vs best)" in page
    # a short recipe far below the task's full run is called out (rt-polarity has no full run here)
    assert ("Reference: the dense model of the task's full compress run (7,363 train rows, 1 epochs, lr 0.0001; "
            "compress_squad-v1.1-dev.json) reaches f1 120.00; this sweep's dense model 50.00, 42% of the way from 0 "
            "to it. Below half of that the dense model has barely learnt the task: differences between methods here "
            "are weak evidence for or against any method; the latency columns are unaffected.") in page
    assert ("reaches accuracy 85.00; this sweep's dense model 85.00, 100% of the way from the majority class "
            "(59.80) to it.\n") in page
    assert page.count("Reference: the dense model") == 2 and page.count("Below half") == 1
    assert (sweep_dir / "sweep_rt-polarity.png").stat().st_size > 0
    assert (sweep_dir / "sweep_squad-v1.1-dev.png").stat().st_size > 0


def test_resume_refuses_results_made_with_other_settings(sweep_dir, monkeypatch):
    args = argparse.Namespace(tasks=["rt-polarity"], seeds=[42], budgets=[0.5], methods=["sensitivity"],
                              max_train_samples=1000, epochs=2.0, warmup_fraction=None, max_eval_samples=None,
                              workdir=sweep_dir / "runs")
    def no_training(*a, **k):
        raise AssertionError("a finished run was started again")

    monkeypatch.setattr(sweep_methods, "run_one", no_training)  # a broken guard must fail here, not train MiniLM
    with pytest.raises(SystemExit, match="was made with"):
        sweep_methods.train_all(args)
    same = argparse.Namespace(**{**vars(args), "max_train_samples": 2000})
    sweep_methods.train_all(same)  # same settings: the finished run is skipped, nothing trains
