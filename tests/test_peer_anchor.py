"""The TextPruner peer row must prune the dense model a sweep actually kept, and report that model's own dense
baseline: on a fresh machine the committed default runs' folders are gone, and the first run of a new sweep
(any variant that trims from the dense model) fine-tunes and keeps it again."""
from __future__ import annotations

import json

import pytest

from benchmarks import accuracy_at_budget, peer_textpruner


def _result(out, variant, budget, seed, folder, dense):
    report = {"variant": variant, "run_folder": str(folder), "dense_baseline": {"accuracy": dense}}
    (out / f"qnli-squad_{variant}_b{budget}_s{seed}.json").write_text(json.dumps(report))


def _kept(folder):
    (folder / "dense_model").mkdir(parents=True)
    (folder / "dense_model" / "config.json").write_text("{}")


def _finished(folder):
    """A finished run folder that kept its dense model."""
    _kept(folder)
    (folder / "run.json").write_text("{}")


@pytest.fixture
def results(tmp_path, monkeypatch):
    out = tmp_path / "accuracy"
    out.mkdir()
    monkeypatch.setattr(accuracy_at_budget, "RESULTS", [out])
    return out


def test_anchor_is_the_kept_run_of_another_variant_when_the_default_folder_is_gone(tmp_path, results):
    _result(results, "default", 0.5, 1, tmp_path / "gone", 87.19)  # committed elsewhere, folder absent
    _result(results, "kwon", 0.3, 1, tmp_path / "kwon_b0.3", 87.02)  # reused the anchor: no dense_model of its own
    _kept(tmp_path / "kwon_b0.5")
    _result(results, "kwon", 0.5, 1, tmp_path / "kwon_b0.5", 87.02)
    report, dense_dir = peer_textpruner._anchor("qnli-squad", 1)
    assert dense_dir == tmp_path / "kwon_b0.5" / "dense_model"
    assert report["dense_baseline"]["accuracy"] == 87.02  # the pruned model's own baseline, not the committed one


def test_a_kept_default_run_is_preferred(tmp_path, results):
    _kept(tmp_path / "default_b0.5")
    _result(results, "default", 0.5, 2, tmp_path / "default_b0.5", 88.15)
    _kept(tmp_path / "uniform_b0.5")
    _result(results, "uniform", 0.5, 2, tmp_path / "uniform_b0.5", 88.15)
    assert peer_textpruner._anchor("qnli-squad", 2)[1] == tmp_path / "default_b0.5" / "dense_model"


def test_no_kept_dense_model_is_a_one_line_error(tmp_path, results):
    _result(results, "default", 0.5, 3, tmp_path / "gone", 87.64)
    with pytest.raises(SystemExit, match=r"^error: no kept dense model for qnli-squad seed 3; run"):
        peer_textpruner._anchor("qnli-squad", 3)


def test_an_existing_textpruner_venv_is_re_entered_not_refused(tmp_path, monkeypatch):
    """Every venv's bin/python resolves to the same base interpreter: the check for "already inside the venv"
    must look at the environment (sys.prefix), or the second run refuses to use the venv the first one made."""
    import builtins
    import sys

    venv = tmp_path / "textpruner-venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    monkeypatch.setattr(peer_textpruner, "VENV", venv)
    real_import = builtins.__import__

    def no_textpruner(name, *args, **kwargs):
        if name == "textpruner":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_textpruner)
    execs = []
    monkeypatch.setattr(peer_textpruner.os, "execv", lambda path, argv: execs.append((path, argv)))
    peer_textpruner._ensure_textpruner()  # outside the venv, venv present: re-run there
    assert execs and execs[0][0] == str(venv / "bin" / "python")
    monkeypatch.setattr(sys, "prefix", str(venv))
    with pytest.raises(SystemExit, match="not importable even in"):
        peer_textpruner._ensure_textpruner()  # inside it and still missing: stop, do not loop


def test_a_sweep_reuses_a_dense_model_kept_at_another_budget(tmp_path):
    """qnli-squad's kept dense models sit in runs that began at 0.7: a later sweep asking for 0.5 first must reuse
    them rather than fine-tune the dense model again (24 CPU-minutes a seed); the first budget still wins."""
    other = accuracy_at_budget._folder(tmp_path, "qnli-squad", "uniform", 0.7, 2)
    other.mkdir()
    _finished(other)
    assert accuracy_at_budget._dense_anchor(tmp_path, "qnli-squad", 0.5, 2) == other
    assert accuracy_at_budget._dense_anchor(tmp_path, "qnli-squad", 0.5, 3) is None  # another seed's is never used
    first = accuracy_at_budget._folder(tmp_path, "qnli-squad", "kwon", 0.5, 2)
    first.mkdir()
    _finished(first)
    assert accuracy_at_budget._dense_anchor(tmp_path, "qnli-squad", 0.5, 2) == first
    one_fine_tune = accuracy_at_budget._folder(tmp_path, "qnli-squad", "one-fine-tune", 0.3, 3)
    one_fine_tune.mkdir()
    _finished(one_fine_tune)
    assert accuracy_at_budget._dense_anchor(tmp_path, "qnli-squad", 0.5, 3) is None  # a warm-up model is no dense one


def test_a_dense_model_kept_at_any_budget_is_found_by_both_benchmarks(tmp_path, results):
    """The budgets come from the names on disk: a sweep that began at 0.9 (a budget no constant listed) still
    serves later sweeps and the TextPruner row, and neither picks up another seed's or task's folder."""
    other_seed = accuracy_at_budget._folder(tmp_path, "qnli-squad", "default", 0.9, 21)
    other_seed.mkdir()
    _finished(other_seed)
    other_task = accuracy_at_budget._folder(tmp_path, "snli", "default", 0.9, 2)
    other_task.mkdir()
    _finished(other_task)
    assert accuracy_at_budget._dense_anchor(tmp_path, "qnli-squad", 0.5, 2) is None
    reused = accuracy_at_budget._folder(tmp_path, "qnli-squad", "default", 0.5, 2)  # reused another run: no dense model
    reused.mkdir()
    (reused / "run.json").write_text("{}")
    assert accuracy_at_budget._dense_anchor(tmp_path, "qnli-squad", 0.5, 2) is None
    kept = accuracy_at_budget._folder(tmp_path, "qnli-squad", "truncate", 0.9, 2)
    _finished(kept)
    assert accuracy_at_budget._dense_anchor(tmp_path, "qnli-squad", 0.5, 2) == kept
    assert accuracy_at_budget._dense_anchor(tmp_path / "absent", "qnli-squad", 0.5, 2) is None
    _result(results, "truncate", 0.9, 2, kept, 88.0)
    _result(results, "textpruner", 0.5, 2, kept, 1.0)  # a peer row is no anchor of its own
    report, dense_dir = peer_textpruner._anchor("qnli-squad", 2)
    assert dense_dir == kept / "dense_model" and report["variant"] == "truncate"
