"""bench / bundle / report on tiny models: structure and self-checks, never timing values."""
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cli.main import app
from sensi_edge.bench import BenchConfig, bench


FAST = ["--runs", "5", "--seconds", "0.2", "--warmup", "1"]




def test_bench_interleaves_variants_with_a_baseline(irregular_export, tmp_path):
    model_dir, onnx_dir, plan = irregular_export
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(app, ["bench", str(onnx_dir / "model.onnx"), str(onnx_dir / "model_int8_dynamic.onnx"),
                                   "--baseline", str(model_dir), "--threads", "1", "--seq-len", "16",
                                   "--output", str(out), *FAST])
    assert res.exit_code == 0, res.stderr
    r = json.loads(out.read_text())
    assert r["baseline"].startswith("baseline:") and len(r["results"]) == 3
    by = {x["variant"]: x for x in r["results"]}
    base = by[r["baseline"]]
    assert base["kind"] == "pytorch" and base["speedup_vs_baseline"] == pytest.approx(1.0)
    int8 = [x for x in r["results"] if x["precision"] == "int8"]
    assert len(int8) == 1 and int8[0]["ceiling_kind"] == "int8"
    for x in r["results"]:
        assert x["runs"] >= 5 and x["p90_ms"] >= x["median_ms"] > 0 and x["peak_rss_mb"] > 0
        assert x["load_seconds"] > 0 and x["first_inference_seconds"] > 0
        # FLOPs of the actual irregular encoder, not of the dense one
        from sensi_edge.cost import encoder_flops

        assert x["flops"] == encoder_flops(plan.trimmed, 16)
        assert x["pct_of_ceiling"] > 0
    assert "avx2" in r["environment"]["cpu"]["isa"] and r["environment"]["versions"]["onnxruntime"]
    assert (tmp_path / "bench.md").read_text().count("\n|") >= 4


def test_bench_times_real_validation_texts_at_their_own_lengths(irregular_export, sst2_dir, tmp_path):
    model_dir, onnx_dir, _ = irregular_export
    out = tmp_path / "real.json"
    res = CliRunner().invoke(app, ["bench", str(onnx_dir / "model_int8_dynamic.onnx"), "--baseline", str(model_dir),
                                   "--threads", "1", "--seq-len", "16", "--texts-from", str(sst2_dir), "--task", "sst2",
                                   "--texts", "12", "--passes", "2", "--output", str(out), *FAST])
    assert res.exit_code == 0, res.stderr
    r = json.loads(out.read_text())
    real = [x for x in r["results"] if x.get("inputs") == "real"]
    assert len(real) == 2 and len(r["results"]) == 4
    from conftest import sentiment_rows
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    lengths = [len(tok(row["sentence"])["input_ids"]) for row in sentiment_rows(48, seed=1)[:12]]
    for x in real:
        assert x["texts"] == 12 and x["runs"] == 24  # every text through every variant, twice
        assert x["mean_tokens"] == pytest.approx(sum(lengths) / 12) and x["max_tokens"] == max(lengths)
        assert x["tokenizer_median_ms"] > 0 and x["with_tokenizer_median_ms"] > x["median_ms"]
    assert [x["speedup_vs_baseline"] for x in real if x["is_baseline"]] == [pytest.approx(1.0)]
    assert "Real inputs: 12 validation texts" in (tmp_path / "real.md").read_text()
    merged = CliRunner().invoke(app, ["report", str(out), "--output", str(tmp_path / "merged")])
    assert merged.exit_code == 0, merged.stderr
    assert "real " in (tmp_path / "merged.md").read_text()


@pytest.mark.parametrize("args,message", [
    (["{onnx}", "--texts-from", "{data}"], "--texts-from and --task go together"),
    (["{missing}.onnx"], "does not exist"),
    (["{bad}"], "not a valid ONNX file"),
    (["{onnx}", "--threads", "0"], "--threads must be in [1, 256]"),
    (["{onnx}", "--seq-len", "4096"], "--seq-len must be in [8, 512]"),
])
def test_bench_bad_input(irregular_export, tmp_path, args, message):
    _, onnx_dir, _ = irregular_export
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    fill = {"{missing}.onnx": str(tmp_path / "missing.onnx"), "{bad}": str(bad), "{onnx}": str(onnx_dir / "model.onnx"),
            "{data}": str(tmp_path)}
    res = CliRunner().invoke(app, ["bench", *[fill.get(a, a) for a in args], "--no-baseline", *FAST])
    assert res.exit_code == 2 and message in res.stderr, res.stderr


def test_bundle_runs_standalone_and_reports_merge(irregular_export, tmp_path):
    _, onnx_dir, _ = irregular_export
    out = tmp_path / "bundle"
    res = CliRunner().invoke(app, ["bundle", str(onnx_dir / "model_int8_dynamic.onnx"), "--output", str(out),
                                   "--seq-len", "32"])
    assert res.exit_code == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["README.txt", "gemm_fp32.onnx", "gemm_int8.onnx", "manifest.json",
                                                     "model.onnx", "run.py", "samples.npz", "tokenizer.json"]
    # run.py needs only numpy + onnxruntime: not sensi_edge, torch, transformers or even onnx
    code = ("import sys, runpy; [sys.modules.__setitem__(m, None) for m in ('sensi_edge', 'torch', 'transformers', 'onnx')];"
            f"sys.argv = ['run.py', '--runs', '3', '--seconds', '0.1', '--warmup', '1', '--ceiling-seconds', '0.1', '--ceiling-runs', '3'];"
            f"runpy.run_path({str(out / 'run.py')!r}, run_name='__main__')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr + run.stdout
    assert "output check: OK" in run.stdout
    device = json.loads((out / "report.json").read_text())
    assert device["output_check"]["ok"] and device["results"][0]["runs"] >= 3
    assert device["results"][0]["head"] == "classification"
    # a tampered model fails the output check and measures nothing
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(out, broken)
    import numpy as np

    s = dict(np.load(broken / "samples.npz"))
    s["expected_logits"] = s["expected_logits"] + 5.0
    np.savez(broken / "samples.npz", **s)
    bad = subprocess.run([sys.executable, str(broken / "run.py"), "--runs", "2"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "output check: FAILED" in bad.stdout
    # merge the device report with a bench report
    host = bench(BenchConfig(models=(onnx_dir / "model.onnx",), auto_baseline=False, seq_len=32, threads=(1,),
                             warmup=1, min_runs=3, min_seconds=0.1, ceiling_seconds=0.1), log=lambda m: None)
    (tmp_path / "host.json").write_text(json.dumps(host))
    merged = CliRunner().invoke(app, ["report", str(out / "report.json"), str(tmp_path / "host.json"),
                                      "--output", str(tmp_path / "merged")])
    assert merged.exit_code == 0, merged.stderr
    md = (tmp_path / "merged.md").read_text()
    assert md.count("\n|") == 4 and (tmp_path / "merged.png").stat().st_size > 1000
    notreport = CliRunner().invoke(app, ["report", str(out / "manifest.json")])
    assert notreport.exit_code == 2 and "not a sensi-edge latency report" in notreport.stderr


def test_load_probe_measures_a_fresh_process(irregular_export):
    import numpy as np

    from sensi_edge.bench import load_probe

    _, onnx_dir, _ = irregular_export
    ballast = np.ones(400 * 2**20 // 8)  # 400 MB in this process must not show up in the child's peak
    probe = load_probe(onnx_dir / "model.onnx", 1, 1, 16)
    assert ballast.sum() > 0
    assert probe["rss_before_load_mb"] < 300 and probe["peak_rss_mb"] > probe["rss_before_load_mb"]


def _compressed_from(tmp_path, base: str):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "report.json").write_text(json.dumps({"model": base, "compressed": {"accuracy": 1.0}, "task": {}, "data": "d", "metric": "accuracy"}))
    return run / "model"


def test_auto_baseline_finds_a_hub_base_model_in_the_local_cache(tmp_path, monkeypatch):
    """Users compress hub ids: bench's default baseline is that model's cached snapshot, never a new download."""
    import huggingface_hub.constants

    from sensi_edge.bench import auto_baseline
    from sensi_edge.errors import SensiEdgeError

    cache = tmp_path / "hub"
    snap = cache / "models--org--tiny-bert" / "snapshots" / "0123abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (cache / "models--org--tiny-bert" / "refs").mkdir()
    (cache / "models--org--tiny-bert" / "refs" / "main").write_text("0123abc")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))

    assert auto_baseline([_compressed_from(tmp_path / "a", "org/tiny-bert")]) == snap
    with pytest.raises(SensiEdgeError, match="hub model 'org/other-bert', which is not in the local Hugging Face "
                                             "cache.*pass --baseline PATH or --no-baseline"):
        auto_baseline([_compressed_from(tmp_path / "b", "org/other-bert")])
    with pytest.raises(SensiEdgeError, match="which no longer exists; pass --baseline PATH"):
        auto_baseline([_compressed_from(tmp_path / "c", str(tmp_path / "deleted-folder"))])
    local = tmp_path / "base"
    local.mkdir()
    assert auto_baseline([_compressed_from(tmp_path / "d", str(local))]) == local
    assert auto_baseline([tmp_path / "base"]) is None  # a plain folder has no compress report: no baseline


def test_publish_and_work_dir_keep_user_folders(tmp_path, monkeypatch):
    """Redo-able stages: an empty OUT is filled, a non-empty one refused; reports name absolute model paths."""
    from sensi_edge.artifacts import staged_output
    from sensi_edge.errors import SensiEdgeError
    from sensi_edge.loading import resolve_model

    out = tmp_path / "out"
    out.mkdir()
    with staged_output(out, "export") as work:
        (work / "model.onnx").write_bytes(b"x")
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx"] and not work.exists()
    with pytest.raises(SensiEdgeError, match="already exists and is not empty"):
        with staged_output(out, "export"):
            pass
    with pytest.raises(RuntimeError, match="boom"):
        with staged_output(tmp_path / "failed", "export") as work:
            raise RuntimeError("boom")
    assert not work.exists() and not (tmp_path / "failed").exists()  # nothing half-written left
    (tmp_path / "models" / "bert").mkdir(parents=True)
    (tmp_path / "models" / "bert" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert resolve_model("models/bert") == str(tmp_path / "models" / "bert")  # one slash, but a folder here


def test_bare_base_model_is_timed_with_the_compared_models_head(tmp_path, tiny_model_dir):
    """compress starts from a bare BertModel; as the baseline of a QA model it must run as a QA model."""
    import torch
    from transformers import BertForQuestionAnswering

    from conftest import tiny_config

    torch.manual_seed(0)
    qa_dir = tmp_path / "qa"
    BertForQuestionAnswering(tiny_config()).save_pretrained(qa_dir)
    r = bench(BenchConfig(models=(qa_dir,), baseline=tiny_model_dir, seq_len=16, threads=(1,), warmup=1,
                          min_runs=3, min_seconds=0.05, ceiling_seconds=0.05), log=lambda m: None)
    heads = {x["variant"].startswith("baseline:"): x["head"] for x in r["results"]}
    assert heads == {True: "qa", False: "qa"}
    # a masked-LM checkpoint (bert-base-uncased's architectures) has no task head either
    from transformers import BertForMaskedLM

    mlm_dir = tmp_path / "mlm"
    BertForMaskedLM(tiny_config()).save_pretrained(mlm_dir)
    from sensi_edge.bench import describe

    assert not describe(mlm_dir).has_head and describe(qa_dir).has_head
    # with a classification model beside it, the same bare folder gets a classification head
    cls = bench(BenchConfig(models=(tiny_model_dir,), seq_len=16, threads=(1,), warmup=1, auto_baseline=False,
                            min_runs=3, min_seconds=0.05, ceiling_seconds=0.05), log=lambda m: None)
    assert [x["head"] for x in cls["results"]] == ["classification"]


def test_evaluate_bench_and_the_device_open_the_same_session(irregular_export):
    """evaluate / export parity (OrtRunner), bench and run.py all go through bundle_runtime.ort_session: the
    session that is scored is the session that is timed."""
    from sensi_edge.bundle_runtime import ort_session
    from sensi_edge.runners import OrtRunner

    _, onnx, _ = irregular_export
    path = onnx / "model_int8_dynamic.onnx"
    scored, timed = OrtRunner(path, threads=1).session.get_session_options(), ort_session(path, 1).get_session_options()
    for opts in (scored, timed):
        assert opts.intra_op_num_threads == 1 and opts.inter_op_num_threads == 1
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert scored.graph_optimization_level == timed.graph_optimization_level
