"""compress end to end on a tiny model: CLI contract, saved artifacts, resume, and every bad input."""
import json
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from cli.main import app
from sensi_edge.artifacts import TrimResult
from sensi_edge.compress import CompressConfig, compress
from sensi_edge.errors import SensiEdgeError
from sensi_edge.finetune import Recipe

from conftest import sentiment_rows, write_jsonl

FAST = ["--epochs", "1", "--batch-size", "8", "--calibration-samples", "8"]


def test_cli_end_to_end_on_tiny_model(tiny_model_dir, tiny_sst2_dir, tmp_path):
    out = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, "-m", "cli.main", "compress", "--model", str(tiny_model_dir), "--task", "sst2",
         "--data", str(tiny_sst2_dir), "--budget", "0.5", "--budget-kind", "params", "--output", str(out),
         "--max-train-samples", "32", "--max-seq-length", "32", "--seed", "3", *FAST],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["params"]["encoder_after_saved"] <= 0.5 * report["params"]["encoder_before"]
    assert report["params"]["encoder_after_saved"] == report["params"]["encoder_after_planned"]
    assert report["masked_vs_pruned_max_abs_diff"] < 1e-4
    assert report["dense_baseline"] is not None and "accuracy" in report["compressed"]
    # with the baseline, the fine-tuned dense model is analysed and trimmed from: no separate warm-up
    assert set(report["wall_seconds"]) == {"baseline", "sensitivity", "plan", "trim", "report", "total"}
    assert report["sensitivity"]["analysed_model"] == "dense fine-tune" and report["sensitivity"]["warmup_fraction"] is None
    assert report["allocation"]["name"] == "calibrated" and report["allocation"]["floors"] == {"heads": 0.15, "ffn": 0.1}
    assert min(report["plan"]["heads_per_layer"]) >= 1  # ceil(0.15 * 4)
    assert report["rows"]["train"] == 32 and report["flops"]["seq_len"] == 32
    for name in ("report.md", "sensitivity.json", "sensitivity.png", "plan.json", "model/config.json",
                 "model/modeling_sensi_bert.py", "model/tokenizer.json"):
        assert (out / name).exists(), name
    assert not (tmp_path / "run.partial").exists()
    assert not any(p.name.startswith("ckpt-") for p in out.iterdir())
    assert "accuracy" in res.stdout and str(out) in res.stdout


def _cfg(model, data, out, **kw):
    return CompressConfig(task="sst2", data=str(data), output=out, model=str(model),
                          recipe=Recipe(epochs=1, batch_size=8, save_steps=2), calibration_samples=8, **kw)


def test_killed_run_resumes_without_redoing_finished_stages(tiny_model_dir, tiny_sst2_dir, tmp_path, monkeypatch):
    import sensi_edge.finetune as ft

    out = tmp_path / "run"
    real = ft.finetune

    def dies_in_trim(*args, schedule=None, **kw):
        if schedule is not None:
            raise KeyboardInterrupt  # the user pressed Ctrl-C during trimmed fine-tuning
        return real(*args, schedule=schedule, **kw)

    monkeypatch.setattr(ft, "finetune", dies_in_trim)
    with pytest.raises(KeyboardInterrupt):
        compress(_cfg(tiny_model_dir, tiny_sst2_dir, out), log=lambda m: None)
    partial = tmp_path / "run.partial"
    assert not out.exists() and (partial / "plan.json").exists()
    stamps = {n: (partial / n).stat().st_mtime_ns for n in ("baseline.json", "sensitivity.json", "plan.json")}
    monkeypatch.setattr(ft, "finetune", real)
    runner = CliRunner()
    fresh = runner.invoke(app, ["compress", "--model", str(tiny_model_dir), "--task", "sst2", "--data",
                                str(tiny_sst2_dir), "--output", str(out)])
    assert fresh.exit_code == 2 and "--resume" in fresh.stderr
    result = compress(_cfg(tiny_model_dir, tiny_sst2_dir, out), resume=True, log=lambda m: None)
    assert result.output == out.resolve() and (out / "model" / "config.json").exists() and not partial.exists()
    for name, stamp in stamps.items():
        assert (out / name).stat().st_mtime_ns == stamp, f"{name} was recomputed"


def _bad(tmp_path, tiny_model_dir, tiny_sst2_dir, **override):
    args = {"--model": str(tiny_model_dir), "--task": "sst2", "--data": str(tiny_sst2_dir),
            "--output": str(tmp_path / "out"), "--budget": "0.5"}
    args.update(override)
    flat = ["compress"] + [x for k, v in args.items() for x in (k, v)]
    return CliRunner().invoke(app, flat)


@pytest.mark.parametrize("override,message", [
    ({"--model": "./no/such/model"}, "model path ./no/such/model does not exist"),
    ({"--model": "nobody-xyz/no-such-model"}, "cannot load model 'nobody-xyz/no-such-model'"),
    ({"--task": "summarise"}, "unknown task 'summarise'"),
    ({"--budget": "0"}, "budget 0.0 is a fraction and must be in (0, 1]"),
    ({"--budget": "1.5"}, "budget 1.5 is a fraction and must be in (0, 1]"),
    ({"--budget-kind": "energy"}, "unknown budget kind"),
])
def test_bad_arguments(tmp_path, tiny_model_dir, tiny_sst2_dir, override, message):
    res = _bad(tmp_path, tiny_model_dir, tiny_sst2_dir, **override)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not any(tmp_path.glob("out*"))


@pytest.mark.parametrize("case,message", [
    ("missing_split", "no 'validation' split"),
    ("missing_column", "no column 'sentence'"),
    ("bad_label", "label 7 outside the task's labels 0..1"),
])
def test_bad_data(tmp_path, tiny_model_dir, case, message):
    d = tmp_path / "data"
    rows = sentiment_rows(8)
    if case == "missing_column":
        rows = [{"text": r["sentence"], "label": r["label"]} for r in rows]
    if case == "bad_label":
        rows[2]["label"] = 7
    write_jsonl(d / "train.jsonl", rows)
    if case != "missing_split":
        write_jsonl(d / "validation.jsonl", rows)
    res = _bad(tmp_path, tiny_model_dir, d)
    assert res.exit_code == 2 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.glob("out*"))


def test_output_with_other_content_is_refused(tmp_path, tiny_model_dir, tiny_sst2_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    res = _bad(tmp_path, tiny_model_dir, tiny_sst2_dir)
    assert res.exit_code == 2 and "already exists and is not empty" in res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] and not (tmp_path / "out.partial").exists()


@pytest.mark.parametrize("method", ["uniform", "magnitude", "random", "fisher-mask", "truncate"])
def test_comparison_methods_run_through_the_same_pipeline(method, tiny_model_dir, tiny_sst2_dir, tmp_path):
    res = compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / method, method=method), log=lambda m: None)
    r = res.report
    assert r["method"] == method and r["params"]["encoder_after_saved"] <= 0.5 * r["params"]["encoder_before"]
    assert r["masked_vs_pruned_max_abs_diff"] < 1e-4
    plan = json.loads((res.output / "plan.json").read_text())
    assert plan["source"]["method"] == method
    if method == "fisher-mask":
        assert "trim" in r["wall_seconds"] and TrimResult.load(res.output / "trim.json").steps == 0
    if method == "truncate":
        assert plan["summary"]["heads_per_layer"][-1] == 0


def test_a_new_method_is_one_registry_entry(tiny_model_dir, tiny_sst2_dir, tmp_path, monkeypatch):
    """The stages ask the Method what to do, not its name: a retraining-free method registered here (no stage
    edited) gets its weights loaded for planning and its own tuning step instead of the trimmed fine-tune, and
    refuses --no-baseline because it declares it plans on the fine-tuned dense model."""
    from sensi_edge.baselines import truncate
    from sensi_edge.methods import METHODS, Method

    seen = {}

    def plan(x):
        seen["model"], seen["calib"] = x.model, x.calib
        return truncate(x.report.geometry, x.report.head_importance, x.report.neuron_importance, x.budget)

    def tune(model, plan, calib):
        seen["tuned"] = len(calib)
        return {"steps": 0, "note": "planted"}

    monkeypatch.setitem(METHODS, "planted", Method("planted", "test method", plan, reads_weights=True, retrains=False,
                                                    needs_dense_fine_tune=True, tune=tune))
    res = compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "p", method="planted"), log=lambda m: None)
    assert seen["model"] is not None and seen["calib"] is None and seen["tuned"] > 0
    assert res.report["trim_steps"] == 0 and res.report["allocation"]["name"] is None
    assert TrimResult.load(res.output / "trim.json").train["note"] == "planted"
    with pytest.raises(SensiEdgeError, match="--method planted plans on the fine-tuned dense model"):
        _cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "q", method="planted", baseline=False)


def test_unknown_method_is_refused(tiny_model_dir, tiny_sst2_dir, tmp_path):
    res = _bad(tmp_path, tiny_model_dir, tiny_sst2_dir, **{"--method": "magic"})
    assert res.exit_code == 2 and "unknown --method 'magic'" in res.stderr


def test_a_kept_run_seeds_other_budgets_without_redoing_dense_stages(tiny_model_dir, tiny_sst2_dir, tmp_path):
    first = compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "b05", keep_intermediate=True), log=lambda m: None)
    assert (first.output / "dense_model" / "config.json").exists() and not (first.output / "warm_model").exists()
    second = compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "b03", budget=0.3, method="uniform",
                           reuse=first.output), log=lambda m: None)
    r = second.report
    assert "baseline" not in r["wall_seconds"] and "sensitivity" not in r["wall_seconds"]
    assert r["dense_baseline"] == first.report["dense_baseline"] and r["reused_stages_from"] == str(first.output)
    assert r["params"]["encoder_after_saved"] <= 0.3 * r["params"]["encoder_before"]
    assert not (second.output / "warm_model").exists()
    with pytest.raises(SensiEdgeError, match=r"its inputs differ from this run's \(tokenised training rows\); nothing"):
        compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "bad", reuse=first.output, max_train_samples=5),
                 log=lambda m: None)
    assert not any(tmp_path.glob("bad*"))


def test_reuse_takes_only_the_stages_a_run_would_compute_identically(tiny_model_dir, tiny_sst2_dir, tmp_path):
    first = compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "anchor", keep_intermediate=True), log=lambda m: None)
    logs = []
    # other probe settings: the dense baseline (and analysed model) is shared, its sensitivity is not
    deeper = compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "p25", probe_density=0.25, reuse=first.output),
                      log=logs.append)
    r = deeper.report
    assert "baseline" not in r["wall_seconds"] and "warmup" not in r["wall_seconds"] and "sensitivity" in r["wall_seconds"]
    assert r["dense_baseline"] == first.report["dense_baseline"]
    assert set(r["reused_wall_seconds"]) == {"baseline"} and r["whole_run_wall_seconds"] > r["wall_seconds"]["total"]
    assert any("reusing from" in m and "baseline.json" in m and "sensitivity.json" not in m for m in logs)
    # fisher-mask analyses the same dense model: it takes the baseline and the sensitivity analysis
    fm = compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "fm", method="fisher-mask", reuse=first.output),
                  log=lambda m: None).report
    assert "baseline" not in fm["wall_seconds"] and "sensitivity" not in fm["wall_seconds"]
    # the same rows in another folder are the same input: the key is of the data, not of the flags
    copy = tmp_path / "copy"
    shutil.copytree(tiny_sst2_dir, copy)
    respelled = compress(_cfg(tiny_model_dir, copy, tmp_path / "same", reuse=first.output), log=lambda m: None).report
    assert "baseline" not in respelled["wall_seconds"] and "sensitivity" not in respelled["wall_seconds"]
    # a run that did not keep its dense model cannot seed a run that needs it
    with pytest.raises(Exception, match="did not keep; rerun it with --keep-intermediate"):
        compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "fm2", method="fisher-mask", reuse=deeper.output),
                 log=lambda m: None)


def test_one_fine_tune_mode_trims_from_the_warm_up_and_reuses_it(tiny_model_dir, tiny_sst2_dir, tmp_path):
    one = compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "one", baseline=False, keep_intermediate=True),
                   log=lambda m: None)
    r = one.report
    assert r["dense_baseline"] is None and r["sensitivity"]["analysed_model"] == "warm-up fine-tune"
    assert r["sensitivity"]["warmup_fraction"] == 0.1 and "warmup" in r["wall_seconds"] and "baseline" not in r["wall_seconds"]
    assert (one.output / "warm_model" / "config.json").exists() and not (one.output / "dense_model").exists()
    again = compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "again", baseline=False, budget=0.3,
                          reuse=one.output), log=lambda m: None).report
    assert "warmup" not in again["wall_seconds"] and "sensitivity" not in again["wall_seconds"]
    longer = compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "w3", baseline=False, warmup_fraction=0.3,
                           reuse=one.output), log=lambda m: None).report
    assert "warmup" in longer["wall_seconds"] and "sensitivity" in longer["wall_seconds"]


def test_analysed_model_is_the_fine_tuned_dense_model(tiny_model_dir, tiny_sst2_dir, tmp_path):
    """sensitivity.json's dense loss is the kept dense model's loss on the calibration rows (not the warm model's)."""
    from transformers import AutoTokenizer

    from sensi_edge.artifacts import SensitivityReport
    from sensi_edge.data import load_task_data
    from sensi_edge.loading import load_for_task
    from sensi_edge.sensitivity import calibration_loss
    from sensi_edge.tasks import get_task
    from sensi_edge.tasks.evaluators import evaluator_for
    from sensi_edge.tasks.tokenise import batches

    run = compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "run", keep_intermediate=True), log=lambda m: None).output
    sens = SensitivityReport.load(run / "sensitivity.json")
    train, _, task = load_task_data(str(tiny_sst2_dir), get_task("sst2"))
    tok = AutoTokenizer.from_pretrained(str(run / "dense_model"))
    calib_rows = train.shuffle(seed=42).select(range(8))
    calib = batches(evaluator_for(task, tok, 128, 128).train_features(calib_rows), tok, 8)
    loss, _ = calibration_loss(load_for_task(str(run / "dense_model"), task)[1], calib)
    assert sens.dense_loss == pytest.approx(loss, rel=1e-5)
    base, _ = calibration_loss(load_for_task(str(tiny_model_dir), task)[1], calib)
    assert abs(base - loss) > 1e-4  # the pretrained model would have given another loss


def test_distilled_trim_runs_and_is_recorded(tiny_model_dir, tiny_sst2_dir, tmp_path):
    r = compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "kd", accurate=True), log=lambda m: None).report
    assert r["accurate"] is True and r["distill"] is True and r["distill_hidden"] == 1.0
    assert r["trim_steps"] == 2 * r["recipe_steps"] and r["masked_vs_pruned_max_abs_diff"] < 1e-4
    with pytest.raises(Exception, match="--distill learns from the fine-tuned dense model"):
        compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "kd2", distill=True, baseline=False), log=lambda m: None)
    with pytest.raises(Exception, match="applies only with --no-baseline"):
        compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "kd3", warmup_fraction=0.2), log=lambda m: None)
    assert not any(tmp_path.glob("kd2*")) and not any(tmp_path.glob("kd3*"))


def test_the_trimmed_fine_tune_runs_its_own_epochs_and_learning_rate(tiny_model_dir, tiny_sst2_dir, tmp_path):
    """--trim-epochs / --trim-learning-rate change the trimmed fine-tune only: the dense baseline keeps the recipe."""
    anchor = compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "a", keep_intermediate=True), log=lambda m: None)
    longer = compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "b", reuse=anchor.output,
                           trim_epochs=2 * anchor.report["recipe"]["epochs"], trim_learning_rate=1e-4),
                      log=lambda m: None).report
    steps = anchor.report["recipe_steps"]
    assert longer["recipe"] == anchor.report["recipe"] and longer["dense_baseline"] == anchor.report["dense_baseline"]
    assert longer["trim_recipe"]["epochs"] == 2 * longer["recipe"]["epochs"]
    assert longer["trim_recipe"]["learning_rate"] == 1e-4 and anchor.report["trim_recipe"] == anchor.report["recipe"]
    assert longer["trim_steps"] == 2 * steps and anchor.report["trim_steps"] == steps


def test_a_deep_trim_after_a_short_recipe_fine_tunes_twice_the_steps_at_twice_the_rate(tiny_model_dir, tiny_sst2_dir,
                                                                                       tmp_path):
    """The deep-trim rule: below 40% of the encoder after a recipe under 500 steps the trimmed fine-tune runs 2x the
    epochs at 2x the learning rate (the report says so and why); at 0.5, with --no-deep-trim, with a --trim-* flag
    or with --distill the trimmed fine-tune is the recipe's (or the flags'), and the dense side never changes."""
    anchor = compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "a", budget=0.3, keep_intermediate=True),
                      log=lambda m: None)
    deep, steps = anchor.report, anchor.report["recipe_steps"]
    assert deep["params"]["encoder_ratio"] < 0.4 and steps < 500
    assert deep["trim_rule"]["rule"] == "deep-trim" and "< 40% and < 500" in deep["trim_rule"]["why"]
    assert deep["trim_recipe"] == {**deep["recipe"], "epochs": 2 * deep["recipe"]["epochs"],
                                   "learning_rate": 2 * deep["recipe"]["learning_rate"]}
    assert deep["trim_steps"] == 2 * steps
    assert "Trimmed fine-tune: " in (anchor.output / "report.md").read_text()

    def run(name, **kw):
        return compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / name, reuse=anchor.output, **kw),
                        log=lambda m: None).report

    off, half = run("off", budget=0.3, deep_trim=False), run("half", budget=0.5)
    flagged, taught = run("flags", budget=0.3, trim_learning_rate=1e-4), run("kd", budget=0.3, distill=True)
    for r, rule in ((off, "recipe"), (half, "recipe"), (flagged, "flags"), (taught, "recipe")):
        assert r["trim_rule"]["rule"] == rule and r["trim_steps"] == steps, r["trim_rule"]
        assert r["dense_baseline"] == deep["dense_baseline"] and r["recipe"] == deep["recipe"]
    assert off["trim_recipe"] == off["recipe"] and off["plan"] == deep["plan"] and "--no-deep-trim" in off["trim_rule"]["why"]
    assert half["params"]["encoder_ratio"] >= 0.4 and half["trim_recipe"] == half["recipe"]
    assert flagged["trim_recipe"]["learning_rate"] == 1e-4 and flagged["trim_recipe"]["epochs"] == deep["recipe"]["epochs"]
    kwon = run("kwon", budget=0.3, method="fisher-mask")
    assert kwon["trim_rule"] is None and kwon["trim_recipe"] is None and kwon["trim_steps"] == 0


def test_problems_found_before_training_leave_nothing_behind(tmp_path, tiny_model_dir, tiny_sst2_dir):
    from transformers import RobertaConfig

    roberta = tmp_path / "roberta"
    RobertaConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, intermediate_size=48).save_pretrained(roberta)
    cases = [
        (["--model", str(roberta)], "model type 'roberta' is not supported"),
        (["--budget", "100", "--absolute"], "cannot be trimmed"),
        (["--reuse", str(tmp_path / "nope")], "is not a compress run kept with --keep-intermediate"),
        (["--max-seq-length", "256"], "exceeds the model's 128 positions"),
    ]
    for extra, message in cases:
        args = ["compress", "--model", str(tiny_model_dir), "--task", "sst2", "--data", str(tiny_sst2_dir),
                "--output", str(tmp_path / "out")]
        if extra[0] == "--model":
            args[2] = extra[1]
            extra = []
        res = CliRunner().invoke(app, args + extra)
        assert res.exit_code == 2 and message in res.stderr, (extra, res.stderr)
        assert not any(tmp_path.glob("out*")), extra


@pytest.mark.parametrize("flags, message", [
    (["--learning-rate", "5e5"], "--learning-rate must be in (0, 1)"),
    (["--epochs", "nan"], "--epochs must be a number > 0"),
    (["--seed", "-1"], "--seed must be in [0, 2^32)"),
    (["--max-seq-length", "0"], "--max-seq-length must be in [8, 512]"),
    (["--floor-heads", "1.5"], "--floor-heads must be in [0, 1]"),
    (["--allocation", "magic"], "unknown --allocation 'magic'"),
    (["--distill", "--no-baseline"], "--distill learns from the fine-tuned dense model"),
    (["--distill-hidden", "1"], "--distill-hidden weights a part of the distillation loss: add --distill"),
    (["--distill", "--distill-hidden", "-1"], "--distill-hidden must be a weight >= 0"),
    (["--accurate", "--no-baseline"], "--accurate distils from the fine-tuned dense model: drop --no-baseline"),
])
def test_numbers_that_would_train_nothing_or_diverge_are_refused(tiny_model_dir, tiny_sst2_dir, tmp_path, flags, message):
    res = CliRunner().invoke(app, ["compress", "--model", str(tiny_model_dir), "--task", "sst2", "--data",
                                   str(tiny_sst2_dir), "--output", str(tmp_path / "out"), *flags])
    assert res.exit_code == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not any(tmp_path.glob("out*"))


def test_a_diverged_fine_tune_is_an_error_not_a_model(tiny_model_dir, tiny_sst2_dir, tmp_path):
    import torch
    from transformers import AutoTokenizer

    from sensi_edge.data import load_task_data
    from sensi_edge.errors import SensiEdgeError
    from sensi_edge.finetune import finetune
    from sensi_edge.loading import load_for_task
    from sensi_edge.tasks import get_task
    from sensi_edge.tasks.evaluators import evaluator_for

    train, _, task = load_task_data(str(tiny_sst2_dir), get_task("sst2"))
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    _, model = load_for_task(str(tiny_model_dir), task)
    with torch.no_grad():
        model.bert.encoder.layer[0].output.dense.weight[0, 0] = float("nan")  # what a diverged step leaves
    with pytest.raises(SensiEdgeError, match="fine-tuning diverged"):
        finetune(model, tok, evaluator_for(task, tok, 32, 16).train_features(train), Recipe(epochs=1, batch_size=16),
                 tmp_path / "ckpt")


def test_stage_keys_are_digests_of_the_data_each_stage_reads(tiny_model_dir, tiny_sst2_dir, tmp_path):
    """Each dense-side stage's key changes with exactly the inputs it declares: edited training text changes the
    baseline key and (through the analysed model and the held-out calibration rows) the sensitivity key; the probe
    density only the sensitivity key."""
    from sensi_edge.stage_keys import StageKeys

    a = compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "a", keep_intermediate=True), log=lambda m: None)
    keys = StageKeys.read(a.output)
    assert set(keys.stages) == {"baseline", "sensitivity"}
    assert set(keys.stages["baseline"]["inputs"]) == {"model", "task", "train", "validation", "recipe"}
    edited = tmp_path / "edited"
    shutil.copytree(tiny_sst2_dir, edited)
    rows = [json.loads(line) for line in (edited / "train.jsonl").read_text().splitlines()]
    write_jsonl(edited / "train.jsonl", [{**r, "sentence": r["sentence"] + " indeed"} for r in rows])  # one word more
    b = StageKeys.read(compress(_cfg(tiny_model_dir, edited, tmp_path / "b", probe_density=0.25),
                                log=lambda m: None).output)
    for stage in ("baseline", "sensitivity"):
        assert b.key(stage) != keys.key(stage)
    assert b.differing("baseline", keys.stages["baseline"]["inputs"]) == ["tokenised training rows"]
    assert b.differing("sensitivity", keys.stages["sensitivity"]["inputs"]) == [
        "analysed model", "calibration batches", "probe density"]


def test_a_refused_reuse_or_resume_names_the_input_that_changed(tiny_model_dir, tiny_sst2_dir, tmp_path, monkeypatch):
    import sensi_edge.finetune as ft
    from sensi_edge.stage_keys import FILE

    first = compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "a", keep_intermediate=True), log=lambda m: None)
    with pytest.raises(SensiEdgeError, match=r"its inputs differ from this run's \(recipe\)"):
        compress(replace(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "lr", reuse=first.output),
                         recipe=Recipe(epochs=1, batch_size=8, save_steps=2, learning_rate=1e-4)), log=lambda m: None)
    (first.output / FILE).unlink()  # as kept by a version before stage keys: refused before anything is written
    with pytest.raises(SensiEdgeError, match="kept by an older sensi-edge"):
        compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "old", reuse=first.output), log=lambda m: None)
    assert not any(tmp_path.glob("lr*")) and not any(tmp_path.glob("old*"))

    # --resume after the data folder was edited between sessions: the finished baseline no longer matches
    data = tmp_path / "data"
    shutil.copytree(tiny_sst2_dir, data)
    real = ft.finetune

    def dies_in_trim(*args, schedule=None, **kw):
        if schedule is not None:
            raise KeyboardInterrupt
        return real(*args, schedule=schedule, **kw)

    monkeypatch.setattr(ft, "finetune", dies_in_trim)
    with pytest.raises(KeyboardInterrupt):
        compress(_cfg(tiny_model_dir, data, tmp_path / "r"), log=lambda m: None)
    monkeypatch.setattr(ft, "finetune", real)
    rows = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    write_jsonl(data / "train.jsonl", list(reversed(rows)))  # the same rows, another order: another fine-tune
    with pytest.raises(SensiEdgeError, match="baseline stage .* computed from other tokenised training rows"):
        compress(_cfg(tiny_model_dir, data, tmp_path / "r"), resume=True, log=lambda m: None)
    write_jsonl(data / "train.jsonl", rows)  # restored: the resume goes on without redoing the baseline
    stamp = (tmp_path / "r.partial" / "baseline.json").stat().st_mtime_ns
    done = compress(_cfg(tiny_model_dir, data, tmp_path / "r"), resume=True, log=lambda m: None)
    assert (done.output / "baseline.json").stat().st_mtime_ns == stamp  # taken as it was, not recomputed


def test_reuse_refuses_another_task_head_and_survives_a_kill_mid_copy(tiny_model_dir, tiny_sst2_dir, tmp_path,
                                                                     monkeypatch):
    first = compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "a", keep_intermediate=True), log=lambda m: None)
    generic = CompressConfig(task="text-classification", data=str(tiny_sst2_dir), output=tmp_path / "g",
                             model=str(tiny_model_dir), recipe=Recipe(epochs=1, batch_size=8, save_steps=2),
                             calibration_samples=8, text_columns=("sentence",), label_column="label", num_labels=3,
                             reuse=first.output)
    with pytest.raises(SensiEdgeError, match=r"its inputs differ from this run's \(task head and labels, validation rows\)"):
        compress(generic, log=lambda m: None)
    # killed after dense_model/ was copied in, before baseline.json: --resume copies the stage again, cleanly
    real = shutil.copy2

    def killed(src, dst, *a, **kw):
        if str(dst).endswith(".baseline.json.copy"):
            raise KeyboardInterrupt
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(shutil, "copy2", killed)
    with pytest.raises(KeyboardInterrupt):
        compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "b", reuse=first.output), log=lambda m: None)
    assert (tmp_path / "b.partial" / "dense_model").is_dir() and not (tmp_path / "b.partial" / "baseline.json").exists()
    monkeypatch.setattr(shutil, "copy2", real)
    done = compress(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "b", reuse=first.output), resume=True,
                    log=lambda m: None)
    assert "baseline" not in done.report["wall_seconds"] and not list(done.output.glob(".*.copy"))


def test_a_run_started_before_the_deep_trim_rule_resumes_only_as_it_ran(tiny_model_dir, tiny_sst2_dir, tmp_path):
    """Its run.json has no deep_trim: it trimmed (or will trim) with the recipe, so --resume needs --no-deep-trim,
    and the default is refused with that fix named, not as 'different settings', and nothing is written."""
    from sensi_edge.compress import _open_work
    from sensi_edge.runlock import RunLock

    work = tmp_path / "old.partial"
    work.mkdir()
    old = json.loads(json.dumps(_cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "old").to_dict()))
    del old["deep_trim"]
    (work / "run.json").write_text(json.dumps({"config": old, "model_path": "m", "sessions": 1}))
    before = (work / "run.json").read_bytes()
    with pytest.raises(SensiEdgeError, match="started before the deep-trim rule.*add --no-deep-trim"):
        _open_work(work, _cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "old"), True, RunLock(work), "m")
    with pytest.raises(SensiEdgeError, match="different settings"):
        _open_work(work, _cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "old", budget=0.3, deep_trim=False), True,
                   RunLock(work), "m")
    assert (work / "run.json").read_bytes() == before
    lock = RunLock(work)
    _open_work(work, _cfg(tiny_model_dir, tiny_sst2_dir, tmp_path / "old", deep_trim=False), True, lock, "m")
    lock.release()
    assert json.loads((work / "run.json").read_text())["sessions"] == 2
