"""Fault matrix: every command fed the inputs a hostile but realistic user gives it.

The contract (the faults issue):
- a user error exits 2 and prints exactly ONE stderr line, ``error: ...``, that names the problem
  and a fix; never a traceback, never an "internal error" (that is the bug fallback, not a message);
- nothing is half-written: no new file or folder appears (not at --output, not at its ``.partial``
  sibling, nowhere else in the user's folder) and no existing user file changes;
- exit 1 is only "ran but rejected" (export's metric gate), never a bad input.

Each case runs the real console-script entry point (``cli.main.main``, typer's usage errors included)
with the user's folder (``tmp_path``) as the working directory, in this process with its file
descriptors captured (so library and C-level output is seen too): a fresh process per case would
spend ~6 s importing torch and transformers, 13 minutes for the matrix. The cases in ``IN_A_PROCESS``
also run as a real subprocess, the way a user runs them. bundle's run.py always runs as a subprocess
(it needs only numpy and onnxruntime). Correct inputs are checked too (``test_correct_use_succeeds``),
so a failing fault case means the command is wrong, not the fixtures.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from conftest import sentiment_rows, write_jsonl

REPO = Path(__file__).resolve().parents[1]
ENV = {**{k: v for k, v in os.environ.items() if k != "SENSI_EDGE_DEBUG"},
       "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
TIMEOUT = 120
UNWRITABLE = "/proc/sensi-edge-faults"  # no process can create anything here, root included

# A message "names a fix" when it says what to do (an imperative) or states the accepted range; a bare ';'
# is not enough.
FIX_HINT = re.compile(r"\b(use|pass|choose|pick|lower|raise|drop|remove|delete|fix|add|give|point|rerun|check|"
                      r"wait|copy|save|fill|write|install|regenerate|recreate|stop|set|see)\b|must be|must end", re.IGNORECASE)

# compress flags that keep a run to seconds if a bad value slips past validation
FAST = ["--epochs", "1", "--batch-size", "8", "--calibration-samples", "8", "--max-train-samples", "32",
        "--max-seq-length", "32"]
BENCH_FAST = ["--no-baseline", "--threads", "1", "--seq-len", "16", "--runs", "3", "--seconds", "0.2", "--warmup", "1"]
RUN_PY_FAST = ["--runs", "2", "--seconds", "0.1", "--warmup", "1", "--ceiling-seconds", "0.05", "--ceiling-runs", "2"]


# ------------------------------------------------------------------ running and checking
def run_cli(args, cwd: Path, capfd=None) -> subprocess.CompletedProcess:
    """The CLI in a subprocess, or (given pytest's ``capfd``) in this process with fds 1 and 2 captured."""
    if capfd is None:
        return _run([sys.executable, "-m", "cli.main", *args], cwd)
    import traceback

    import cli.main

    argv, here = sys.argv, os.getcwd()
    sys.argv = ["sensi-edge", *map(str, args)]
    os.chdir(cwd)
    capfd.readouterr()
    code = 0
    try:
        cli.main.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # what a user would see: the interpreter prints it and exits 1
        traceback.print_exc()
        code = 1
    finally:
        sys.argv = argv
        os.chdir(here)
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def _run(cmd, cwd: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd, env=ENV)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {TIMEOUT}s: the bad input was not refused up front")


def summary(res: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    first, last = (lines[0], lines[-1]) if lines else ("", "")
    tb = "; Traceback" if "Traceback" in res.stdout + res.stderr else ""
    return f"rc={res.returncode}, {len(lines)} stderr line(s){tb}; first: {first[:220]!r}; last: {last[:220]!r}"


def assert_clean_error(res: subprocess.CompletedProcess, must_contain=None) -> None:
    """Exit 2, no traceback, one stderr line ``error: ...`` naming the problem (``must_contain``) and a fix."""
    why = summary(res)
    assert "Traceback" not in res.stdout + res.stderr, f"traceback: {why}"
    assert res.returncode == 2, f"exit code: {why}"
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"not one stderr line: {why}"
    line = lines[0]
    assert line.startswith("error: "), f"no 'error: ' prefix: {why}"
    assert "internal error" not in line and "this is a bug" not in line, f"bug fallback, not a user message: {why}"
    for text in (must_contain,) if isinstance(must_contain, str) else (must_contain or ()):
        assert text in line, f"does not mention {text!r}: {why}"
    assert FIX_HINT.search(line[len("error: "):]), f"names no fix: {why}"


def tree(root: Path) -> dict[str, str]:
    """Every file (content hash) and folder under root: what 'nothing written, nothing changed' compares."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def assert_untouched(before: dict, after: dict, res) -> None:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (added or removed or changed), (f"files touched: added {added[:5]}, removed {removed[:5]}, "
                                               f"changed {changed[:5]}; {summary(res)}")


# ------------------------------------------------------------------ shared artefacts (built once)
@dataclass(frozen=True)
class World:
    model: Path  # tiny random BertModel + tokenizer (max 128 positions)
    squad: Path  # tiny SQuAD data folder
    onnx: Path  # tiny sst2 export folder: model.onnx + tokenizer + export_report.json
    qa_onnx: Path  # tiny SQuAD export folder
    bundle: Path  # a bundle of onnx/model.onnx at seq len 32


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir) -> World:
    from sensi_edge.bundle import bundle
    from sensi_edge.export import ExportConfig, export
    from conftest import squad_rows

    root = tmp_path_factory.mktemp("faults")
    sst2 = root / "sst2"
    write_jsonl(sst2 / "train.jsonl", sentiment_rows(32))
    write_jsonl(sst2 / "validation.jsonl", sentiment_rows(16, seed=1))
    squad = root / "squad"
    write_jsonl(squad / "train.jsonl", squad_rows(16))
    write_jsonl(squad / "validation.jsonl", squad_rows(6, seed=1))
    onnx = export(ExportConfig(tiny_model_dir, root / "onnx", quantize=("none",), task="sst2", data=str(sst2),
                               max_metric_drop=100.0), log=lambda m: None).output
    qa = export(ExportConfig(tiny_model_dir, root / "qa_onnx", quantize=("none",), task="squad", data=str(squad),
                             max_seq_length=64, doc_stride=16, max_metric_drop=100.0), log=lambda m: None).output
    return World(tiny_model_dir, squad, onnx, qa, bundle(onnx / "model.onnx", root / "bundle", seq_len=32))


# ------------------------------------------------------------------ setups: what the user's folder holds
def data(train=None, validation=None, files=None):
    """A setup writing the data folder tmp/bad: train/validation.jsonl from row factories (None: no such
    split), and raw ``files`` (name -> text)."""
    def setup(tmp: Path, w: World):
        d = tmp / "bad"
        d.mkdir()
        for name, rows in (("train", train), ("validation", validation)):
            if rows is not None:
                write_jsonl(d / f"{name}.jsonl", rows())
        for name, text in (files or {}).items():
            (d / name).write_text(text)
    return setup


def good(n=16, seed=0):
    return lambda: sentiment_rows(n, seed)


def changed(row: int, **values):
    def rows():
        r = sentiment_rows(16)
        r[row].update(values)
        return r
    return rows


def relabel(fn):
    return lambda: [{**r, "label": fn(r)} for r in sentiment_rows(16)]


def files(contents: dict):
    """A setup writing files (paths relative to tmp; bytes, text, or a dict/list written as JSON)."""
    def setup(tmp: Path, w: World):
        for rel, content in contents.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            elif isinstance(content, (dict, list)):
                p.write_text(json.dumps(content))
            else:
                p.write_text(content)
    return setup


def model_without_tokenizer(tmp: Path, w: World):
    (tmp / "notok").mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy2(w.model / name, tmp / "notok" / name)


def nan_model(tmp: Path, w: World):
    """What a diverged fine-tune leaves: the tiny model with one weight matrix all NaN."""
    import torch
    from transformers import AutoTokenizer, BertModel

    m = BertModel.from_pretrained(w.model)
    with torch.no_grad():
        m.encoder.layer[0].attention.output.dense.weight.fill_(float("nan"))
    m.save_pretrained(tmp / "nanmodel")
    AutoTokenizer.from_pretrained(w.model).save_pretrained(tmp / "nanmodel")


def roberta_model(tmp: Path, w: World):
    from transformers import RobertaConfig

    RobertaConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, intermediate_size=48).save_pretrained(
        tmp / "roberta")


def fake_onnx_with_tokenizer(tmp: Path, w: World):
    (tmp / "fake").mkdir()
    (tmp / "fake" / "x.onnx").write_text("this is not a model\n")
    for f in w.onnx.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "vocab")):
            shutil.copy2(f, tmp / "fake" / f.name)


def copy_onnx(name):
    def setup(tmp: Path, w: World):
        shutil.copy2(w.onnx / "model.onnx", tmp / name)
    return setup


DROP = object()  # latency_report(median_ms=DROP): a row without that key


def latency_report(**row):
    """A minimal valid latency report (as bench / run.py write them) with one result row changed."""
    from sensi_edge.bundle_runtime import REPORT_SCHEMA

    result = {"variant": "onnx/model", "kind": "onnx", "precision": "fp32", "threads": 1, "batch": 1, "seq_len": 16,
              "median_ms": 1.5, "p90_ms": 1.8, "size_bytes": 2_000_000, "metric": None, "speedup_vs_baseline": None}
    result.update(row)
    result = {k: v for k, v in result.items() if v is not DROP}
    return {"schema": REPORT_SCHEMA, "source": "bench",
            "environment": {"cpu": {"model": "test cpu", "machine": "x86_64"}}, "results": [result]}


# ------------------------------------------------------------------ the CLI cases
@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    must_contain: tuple[str, ...] = ()
    setup: Callable | None = None


def case(id_, args, must=(), setup=None):
    return pytest.param(Case(tuple(args), (must,) if isinstance(must, str) else tuple(must), setup), id=id_)


def compress(id_, *extra, must=(), setup=None):
    """compress on a good tiny model and data; ``extra`` flags come last, so they override (click: last wins)."""
    base = ["compress", "--model", "{model}", "--task", "sst2", "--data", "{data}", "--output", "{out}", *FAST]
    return case(f"compress-{id_}", base + list(extra), must, setup)


SQUAD = ["--task", "squad", "--data", "{squad}", "--max-seq-length", "64"]


def export(id_, *extra, model="{model}", onnx=True, must=(), setup=None):
    base = ["export", model, *(["--onnx"] if onnx else []), "--task", "sst2", "--data", "{data}", "--output", "{out}",
            "--quantize", "none", "--max-eval-samples", "16"]
    return case(f"export-{id_}", base + list(extra), must, setup)


def evaluate(id_, *extra, target="{onnx}/model.onnx", must=(), setup=None):
    return case(f"evaluate-{id_}", ["evaluate", target, "--task", "sst2", "--data", "{data}", *extra], must, setup)


def bench(id_, *extra, target="{onnx}/model.onnx", must=(), setup=None):
    return case(f"bench-{id_}", ["bench", target, *BENCH_FAST, "--output", "{tmp}/bench.json", *extra], must, setup)


def bundle(id_, *extra, target="{onnx}/model.onnx", must=(), setup=None):
    return case(f"bundle-{id_}", ["bundle", target, "--output", "{out}", "--seq-len", "32", *extra], must, setup)


def report(id_, *reports, output="{tmp}/merged", must=(), setup=None):
    return case(f"report-{id_}", ["report", *reports, "--output", output], must, setup)


CASES = [
    # ---- compress: numbers
    compress("epochs-nan", "--epochs", "nan", must="--epochs"),
    compress("epochs-inf", "--epochs", "inf", must="--epochs"),
    compress("epochs-0", "--epochs", "0", must="--epochs"),
    compress("epochs-negative", "--epochs", "-1", must="--epochs"),
    compress("lr-5e5", "--learning-rate", "5e5", must="--learning-rate"),
    compress("lr-inf", "--learning-rate", "inf", must="--learning-rate"),
    compress("lr-nan", "--learning-rate", "nan", must="--learning-rate"),
    compress("lr-0", "--learning-rate", "0", must="--learning-rate"),
    compress("seed-negative", "--seed", "-1", must="--seed"),
    compress("seed-not-a-number", "--seed", "abc", must="--seed"),
    compress("batch-size-0", "--batch-size", "0", must="--batch-size"),
    compress("max-eval-samples-negative", "--max-eval-samples", "-1", must="--max-eval-samples"),
    compress("max-eval-samples-0", "--max-eval-samples", "0", must="--max-eval-samples"),
    compress("max-train-samples-0", "--max-train-samples", "0", must="--max-train-samples"),
    compress("max-seq-length-0", "--max-seq-length", "0", must="--max-seq-length"),
    compress("max-seq-length-4", "--max-seq-length", "4", must="--max-seq-length"),
    compress("max-seq-length-100000", "--max-seq-length", "100000", must="--max-seq-length"),
    compress("max-seq-length-beyond-positions", "--max-seq-length", "256", must="128"),
    compress("budget-0", "--budget", "0", must="budget"),
    compress("budget-negative", "--budget", "-0.5", must="budget"),
    compress("budget-1.5", "--budget", "1.5", must="budget"),
    compress("budget-nan", "--budget", "nan", must="budget"),
    compress("absolute-budget-too-small", "--budget", "100", "--absolute", must="budget"),
    compress("probe-density-0", "--probe-density", "0", must="--probe-density"),
    compress("probe-density-2", "--probe-density", "2", must="--probe-density"),
    compress("ramp-negative", "--ramp", "-0.1", must="--ramp"),
    compress("trim-epochs-0", "--trim-epochs", "0", must="--trim-epochs"),
    compress("trim-epochs-nan", "--trim-epochs", "nan", must="--trim-epochs"),
    compress("trim-learning-rate-2", "--trim-learning-rate", "2", must="--trim-learning-rate"),
    compress("calibration-samples-0", "--calibration-samples", "0", must="--calibration-samples"),
    # (--doc-stride 0 is valid: windows without overlap)
    compress("squad-doc-stride-negative", *SQUAD, "--doc-stride", "-5", must="--doc-stride"),
    compress("num-labels-1", "--num-labels", "1", must="--num-labels"),
    compress("num-labels-0", "--num-labels", "0", must="--num-labels"),
    compress("floor-heads-2", "--floor-heads", "2", must="--floor-heads"),
    compress("budget-kind-bad", "--budget-kind", "energy", must="energy"),
    compress("latency-budget-without-profile", "--budget-kind", "latency", must="--latency-profile"),
    compress("method-bad", "--method", "magic", must="magic"),
    compress("sensitivity-bad", "--sensitivity", "gradient", must="gradient"),
    compress("allocation-bad", "--allocation", "greedy", must="greedy"),
    compress("task-bad", "--task", "summarise", must="summarise"),
    compress("three-text-columns", "--task", "text-classification", "--text-column", "a", "--text-column", "b",
             "--text-column", "c", must="column"),
    compress("warmup-fraction-with-baseline", "--warmup-fraction", "0.2", must="--warmup-fraction"),
    # ---- compress: paths
    compress("model-missing", "--model", "{tmp}/no-such-model", must="no-such-model"),
    compress("model-without-tokenizer", "--model", "{tmp}/notok", must=("notok", "tokenizer"),
             setup=model_without_tokenizer),
    compress("model-is-a-file", "--model", "{tmp}/model.bin", must="model.bin", setup=files({"model.bin": b"\0" * 64})),
    compress("model-not-bert", "--model", "{tmp}/roberta", must="roberta", setup=roberta_model),
    compress("data-missing", "--data", "{tmp}/no-such-data", must="no-such-data"),
    compress("data-is-a-file", "--data", "{data}/train.jsonl", must="train.jsonl"),
    compress("data-no-train", "--data", "{tmp}/bad", must="train", setup=data(validation=good())),
    compress("data-no-validation", "--data", "{tmp}/bad", must="validation", setup=data(train=good())),
    compress("data-empty-train", "--data", "{tmp}/bad", must="train",
             setup=data(validation=good(), files={"train.jsonl": ""})),
    compress("data-csv-wrong-delimiter", "--data", "{tmp}/bad", must="sentence",
             setup=data(files={f"{s}.csv": "sentence;label\n" + "".join(f"the film was {w};{i % 2}\n"
                                                                        for i, w in enumerate(["dull", "great"] * 8))
                               for s in ("train", "validation")})),
    # null / empty text: the row must be named (file, row, column) rather than crash or train on nothing
    compress("data-null-text", "--data", "{tmp}/bad", must=("train", "sentence"),
             setup=data(changed(3, sentence=None), good(seed=1))),
    compress("data-empty-text", "--data", "{tmp}/bad", must=("train", "sentence"),
             setup=data(changed(3, sentence=""), good(seed=1))),
    compress("data-label-out-of-range", "--data", "{tmp}/bad", must="7", setup=data(changed(2, label=7), good(seed=1))),
    compress("data-single-class", "--data", "{tmp}/bad", must="class",
             setup=data(relabel(lambda r: 1), good(seed=1))),
    compress("data-string-labels", "--data", "{tmp}/bad", must="label",
             setup=data(relabel(lambda r: ["negative", "positive"][r["label"]]), good(seed=1))),
    compress("data-missing-column", "--data", "{tmp}/bad", must="sentence",
             setup=data(lambda: [{"text": r["sentence"], "label": r["label"]} for r in sentiment_rows(16)], good(seed=1))),
    compress("reuse-missing", "--reuse", "{tmp}/no-such-run", must="--reuse"),
    # ---- compress: outputs
    compress("output-nonempty-folder", must="out", setup=files({"out/notes.txt": "mine\n"})),
    compress("output-is-a-file", must="out", setup=files({"out": "my file\n"})),
    compress("resume-without-partial", "--resume", must="--resume"),
    # a second plain run beside an unfinished one: must name the folder and say how to continue
    compress("partial-exists", must=("--resume", "out.partial"),
             setup=files({"out.partial/run.json": {"config": {"task": "mnli"}, "sessions": 1}})),
    compress("user-folder-named-partial", must="out.partial", setup=files({"out.partial/mine.txt": "mine\n"})),
    compress("resume-different-flags", "--resume", must="--resume",
             setup=files({"out.partial/run.json": {"config": {"task": "mnli"}, "sessions": 1}})),
    compress("output-parent-is-a-file", "--output", "{tmp}/afile/out", must="afile", setup=files({"afile": "mine\n"})),
    compress("output-unwritable", "--output", f"{UNWRITABLE}/out", must=UNWRITABLE),
    # ---- export
    export("opset-5", "--opset", "5", must="--opset"),
    export("parity-rows-0", "--parity-rows", "0", must="--parity-rows"),
    export("calibration-rows-0", "--calibration-rows", "0", must="--calibration-rows"),
    export("max-metric-drop-nan", "--max-metric-drop", "nan", must="--max-metric-drop"),
    export("max-metric-drop-negative", "--max-metric-drop", "-1", must="--max-metric-drop"),
    export("max-eval-samples-negative", "--max-eval-samples", "-1", must="--max-eval-samples"),
    export("threads-0", "--threads", "0", must="--threads"),
    export("threads-negative", "--threads", "-1", must="--threads"),
    export("max-seq-length-0", "--max-seq-length", "0", must="--max-seq-length"),
    export("max-seq-length-beyond-positions", "--max-seq-length", "256", must="128"),
    export("quantize-bad", "--quantize", "float8", must="float8"),
    export("preset-bad", "--preset", "cuda", must="cuda"),
    export("weight-type-bad", "--weight-type", "int4", must="int4"),
    export("no-onnx-flag", onnx=False, must="--onnx"),
    export("model-missing", model="{tmp}/no-such-model", must="no-such-model"),
    export("split-missing", "--split", "test", must="test"),
    export("output-nonempty-folder", must="out", setup=files({"out/notes.txt": "mine\n"})),
    export("nan-model", model="{tmp}/nanmodel", must=("non-finite", "--learning-rate"), setup=nan_model),
    # ---- evaluate
    evaluate("max-samples-0", "--max-samples", "0", must="--max-samples"),
    evaluate("max-samples-negative", "--max-samples", "-1", must="--max-samples"),
    evaluate("batch-size-0", "--batch-size", "0", must="--batch-size"),
    evaluate("threads-negative", "--threads", "-1", must="--threads"),
    evaluate("max-seq-length-0", "--max-seq-length", "0", must="--max-seq-length"),
    evaluate("onnx-missing", target="{tmp}/no-such.onnx", must="no-such.onnx"),
    evaluate("onnx-is-text", target="{tmp}/fake/x.onnx", must="x.onnx", setup=fake_onnx_with_tokenizer),
    evaluate("qa-onnx-as-sst2", target="{qa_onnx}/model.onnx", must="sst2"),
    evaluate("sst2-onnx-as-squad", *SQUAD, must="squad"),
    evaluate("nan-model", target="{tmp}/nanmodel", must=("non-finite", "--learning-rate"), setup=nan_model),
    evaluate("data-missing", "--data", "{tmp}/no-such-data", must="no-such-data"),
    evaluate("model-without-tokenizer", target="{tmp}/notok", must="tokenizer", setup=model_without_tokenizer),
    evaluate("num-labels-mismatch", "--task", "text-classification", "--num-labels", "3", must="3"),
    # ---- bench
    bench("seq-len-0", "--seq-len", "0", must="--seq-len"),
    bench("seq-len-negative", "--seq-len", "-1", must="--seq-len"),
    bench("seq-len-100000", "--seq-len", "100000", must="--seq-len"),
    bench("threads-0", "--threads", "0", must="--threads"),
    bench("threads-negative", "--threads", "-1", must="--threads"),
    bench("threads-not-a-number", "--threads", "two", must="--threads"),
    bench("runs-0", "--runs", "0", must="--runs"),
    bench("seconds-nan", "--seconds", "nan", must="--seconds"),
    bench("seconds-negative", "--seconds", "-1", must="--seconds"),
    bench("batch-0", "--batch", "0", must="--batch"),
    bench("warmup-negative", "--warmup", "-1", must="--warmup"),
    bench("model-missing", target="{tmp}/no-such.onnx", must="no-such.onnx"),
    bench("not-a-model-folder", target="{tmp}/docs", must="docs", setup=files({"docs/readme.txt": "hello\n"})),
    # an existing file bench did not write is refused before measuring, and kept as it was
    bench("output-is-users-onnx", "--output", "{tmp}/model.onnx", must="model.onnx", setup=copy_onnx("model.onnx")),
    bench("output-is-users-notes", "--output", "{tmp}/notes.json", must="notes.json",
          setup=files({"notes.json": {"mine": True}})),
    bench("output-md-sibling-is-users", "--output", "{tmp}/results.json", must="results.md",
          setup=files({"results.md": "# my results\n"})),
    bench("output-is-a-folder", "--output", "{tmp}/reports", must="reports", setup=files({"reports/keep.txt": "mine\n"})),
    bench("output-unwritable", "--output", f"{UNWRITABLE}/bench.json", must=UNWRITABLE),
    # ---- bundle
    bundle("threads-0", "--threads", "0", must="--threads"),
    bundle("seq-len-0", "--seq-len", "0", must="--seq-len"),
    bundle("seq-len-beyond-positions", "--seq-len", "256", must="--seq-len"),
    bundle("onnx-missing", target="{tmp}/no-such.onnx", must="no-such.onnx"),
    bundle("not-an-onnx-file", target="{tmp}/model.txt", must="model.txt", setup=files({"model.txt": "hello\n"})),
    bundle("onnx-is-text", target="{tmp}/x.onnx", must="x.onnx", setup=files({"x.onnx": "not a model\n"})),
    bundle("output-nonempty-folder", must="out", setup=files({"out/notes.txt": "mine\n"})),
    # ---- report
    report("missing-file", "{tmp}/no-such.json", must="no-such.json"),
    report("no-reports", must="report"),
    report("json-list", "{tmp}/r.json", must="r.json", setup=files({"r.json": [latency_report()]})),
    report("binary-file", "{tmp}/r.json", must="r.json", setup=files({"r.json": bytes(range(256)) * 4})),
    report("row-without-median", "{tmp}/r.json", must="median_ms",
           setup=files({"r.json": latency_report(median_ms=DROP)})),
    report("string-median", "{tmp}/r.json", must="median_ms",
           setup=files({"r.json": latency_report(median_ms="fast")})),
    report("no-results", "{tmp}/r.json", must="r.json",
           setup=files({"r.json": {**latency_report(), "results": []}})),
    report("output-md-is-users", "{tmp}/r.json", must="merged.md",
           setup=files({"r.json": latency_report(), "merged.md": "# my notes\n"})),
    report("output-unwritable", "{tmp}/r.json", output=f"{UNWRITABLE}/merged", must=UNWRITABLE,
           setup=files({"r.json": latency_report()})),
]


def _fill(args, w: World, tmp: Path, data_dir: Path) -> list[str]:
    paths = {"model": w.model, "squad": w.squad, "onnx": w.onnx, "qa_onnx": w.qa_onnx, "tmp": tmp, "data": data_dir,
             "out": tmp / "out"}
    return [a.format(**paths) for a in args]


@pytest.mark.parametrize("c", CASES)
def test_bad_input_is_one_clean_error(c: Case, world, tmp_path, tiny_sst2_dir, capfd):
    if c.setup:
        c.setup(tmp_path, world)
    before = tree(tmp_path)
    res = run_cli(_fill(c.args, world, tmp_path, tiny_sst2_dir), tmp_path, capfd)
    assert_clean_error(res, c.must_contain)
    assert_untouched(before, tree(tmp_path), res)


# one or two of each kind, as real processes: start-up, typer's usage errors, stderr of a fresh interpreter
IN_A_PROCESS = ["compress-seed-not-a-number", "compress-lr-5e5", "compress-data-null-text", "compress-partial-exists",
                "export-output-nonempty-folder", "export-max-seq-length-beyond-positions", "evaluate-qa-onnx-as-sst2",
                "bench-output-is-users-onnx", "bundle-seq-len-beyond-positions", "report-binary-file",
                "report-no-reports"]


assert set(IN_A_PROCESS) <= {p.id for p in CASES}


@pytest.mark.parametrize("c", [pytest.param(*p.values, id=p.id) for p in CASES if p.id in IN_A_PROCESS])
def test_bad_input_in_a_fresh_process(c: Case, world, tmp_path, tiny_sst2_dir):
    if c.setup:
        c.setup(tmp_path, world)
    before = tree(tmp_path)
    res = run_cli(_fill(c.args, world, tmp_path, tiny_sst2_dir), tmp_path)
    assert_clean_error(res, c.must_contain)
    assert_untouched(before, tree(tmp_path), res)


# ------------------------------------------------------------------ a bundle's run.py (numpy + onnxruntime only)
def manifest(**changes):
    def setup(b: Path):
        m = json.loads((b / "manifest.json").read_text())
        (b / "manifest.json").write_text(json.dumps({**m, **changes}))
    return setup


def remove(name):
    return lambda b: (b / name).unlink()


def write(name, text):
    return lambda b: (b / name).write_text(text)


RUN_PY_CASES = [
    pytest.param(["--threads", "0"], "--threads", None, id="run.py-threads-0"),
    pytest.param(["--runs", "0"], "--runs", None, id="run.py-runs-0"),
    pytest.param(["--seconds", "-1"], "--seconds", None, id="run.py-seconds-negative"),
    pytest.param(["--seconds", "nan"], "--seconds", None, id="run.py-seconds-nan"),
    pytest.param(["--warmup", "-1"], "--warmup", None, id="run.py-warmup-negative"),
    pytest.param(["--check-only"], "manifest.json", write("manifest.json", "{ not json"), id="run.py-manifest-corrupt"),
    pytest.param(["--check-only"], "manifest.json", remove("manifest.json"), id="run.py-manifest-missing"),
    pytest.param(["--check-only"], "gone.onnx", manifest(model="gone.onnx"), id="run.py-manifest-model-missing"),
    pytest.param(["--check-only"], "samples.npz", remove("samples.npz"), id="run.py-samples-missing"),
    pytest.param(["--check-only", "--out", f"{UNWRITABLE}/report.json"], UNWRITABLE, None, id="run.py-out-unwritable"),
    # the bundle's own manifest is not a place for a report: overwriting it breaks the bundle
    pytest.param(["--check-only", "--out", "manifest.json"], "manifest.json", None, id="run.py-out-is-the-manifest"),
]


@pytest.mark.parametrize("args,must,setup", RUN_PY_CASES)
def test_bundle_run_py_bad_input_is_one_clean_error(args, must, setup, world, tmp_path):
    b = tmp_path / "bundle"
    shutil.copytree(world.bundle, b)
    if setup:
        setup(b)
    before = tree(tmp_path)
    fast = [] if "--check-only" in args else RUN_PY_FAST  # first: the case's own flag comes last and wins
    res = _run([sys.executable, "run.py", *fast, *args], b)
    assert_clean_error(res, must)
    assert_untouched(before, tree(tmp_path), res)


# ------------------------------------------------------------------ controls: the same fixtures, used correctly
def test_correct_use_succeeds(world, tmp_path, tiny_sst2_dir):
    """Exit 0 with good input: the fault cases fail because of their one bad input, not the fixtures."""
    ev = run_cli(["evaluate", world.onnx / "model.onnx", "--task", "sst2", "--data", tiny_sst2_dir, "--json"], tmp_path)
    assert ev.returncode == 0 and "Traceback" not in ev.stderr, summary(ev)
    assert json.loads(ev.stdout)["rows"] == 16
    (tmp_path / "r.json").write_text(json.dumps(latency_report()))
    rep = run_cli(["report", tmp_path / "r.json", "--output", tmp_path / "merged"], tmp_path)
    assert rep.returncode == 0 and (tmp_path / "merged.md").is_file(), summary(rep)
    b = tmp_path / "bundle"
    shutil.copytree(world.bundle, b)
    check = _run([sys.executable, "run.py", "--check-only", "--out", tmp_path / "device.json"], b)
    assert check.returncode == 0 and "output check: OK" in check.stdout, summary(check)


def test_bench_never_replaces_another_devices_report(world, tmp_path, capfd):
    """A board's run.py report (or another machine's bench report) at --output is refused; our own bench
    report from this machine is replaced (rerunning bench into the same file is the normal use)."""
    from sensi_edge.bundle_runtime import cpu_info

    target = tmp_path / "r.json"
    args = ["bench", world.onnx / "model.onnx", *BENCH_FAST, "--output", target]
    for source, cpu in (("bundle", cpu_info()["model"]), ("bench", "Raspberry Pi 4 (Cortex-A72)")):
        (tmp_path / "r.json").write_text(json.dumps({**latency_report(), "source": source,
                                                     "environment": {"cpu": {"model": cpu, "machine": "aarch64"}}}))
        before = tree(tmp_path)
        res = run_cli(args, tmp_path, capfd)
        assert_clean_error(res, "r.json")
        assert_untouched(before, tree(tmp_path), res)
    target.write_text(json.dumps({**latency_report(), "environment": {"cpu": {"model": cpu_info()["model"],
                                                                               "machine": "x86_64"}}}))
    res = run_cli(args, tmp_path, capfd)
    assert res.returncode == 0, summary(res)
    assert json.loads(target.read_text())["environment"].get("versions")  # replaced by the new measurement
