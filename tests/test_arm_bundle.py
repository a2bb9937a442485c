"""The device bundle under emulated aarch64 (qemu-user, Debian bookworm arm64 rootfs): run.py must load the int8
model, pass its output check against the x86 expected outputs and write an aarch64 report.

Slow: the first run builds the emulator cache with .ci/arm_setup.sh (downloads, a few minutes); cached runs take
well under a minute. Skipped, with the script's one-line reason, where the emulator cannot be set up.
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app


SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "arm_setup.sh"
RUN_ARGS = ["--runs", "3", "--seconds", "0.5", "--warmup", "1", "--threads", "1", "--ceiling-seconds", "0.2", "--ceiling-runs", "3"]

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux")]


def _script(*args, timeout):
    # pin the emulated onnxruntime/numpy to this interpreter's, which computed the bundle's expected outputs
    env = {**os.environ, "SENSI_EDGE_ARM_HOST_PYTHON": sys.executable}
    # own process group: on a timeout the emulator (a child of bash) must die too, not linger
    proc = subprocess.Popen(["bash", str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f".ci/arm_setup.sh {' '.join(args)} timed out after {timeout}s\n{out}\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _reason(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else f".ci/arm_setup.sh exited {proc.returncode} without a reason"


@pytest.fixture(scope="module")
def arm_env():
    prep = _script("prepare", timeout=3600)
    if prep.returncode != 0:
        pytest.skip(f"aarch64 emulator unavailable: {_reason(prep)}")


def test_int8_bundle_runs_under_emulated_aarch64(arm_env, irregular_export, tmp_path):  # noqa: F811  (arm_env first: skip fast)
    _, onnx_dir, _ = irregular_export
    out = tmp_path / "bundle"
    res = CliRunner().invoke(app, ["bundle", str(onnx_dir / "model_int8_dynamic.onnx"), "--output", str(out),
                                   "--seq-len", "32"])
    assert res.exit_code == 0, res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["int8"]

    run = _script("run", str(out), *RUN_ARGS, timeout=900)
    log = f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    assert run.returncode == 0, log
    assert "output check: OK" in run.stdout, log
    report = json.loads((out / "report.json").read_text())
    env = report["environment"]
    assert env["cpu"]["machine"] == "aarch64", env
    assert env["cpu"]["isa"]["asimd"] and not env["cpu"]["isa"]["avx2"], env["cpu"]
    assert env["versions"] == manifest["created_with"], "emulated run must use the versions that made the bundle"
    check = report["output_check"]
    assert check["ok"], check
    tol = manifest["tolerance"]
    for name in manifest["outputs"]:
        assert check[name]["max_abs_diff"] <= tol["max_abs_diff"], (name, check[name], tol)
        assert check[name]["argmax_agreement"] >= tol["argmax_agreement"], (name, check[name], tol)
    (result,) = report["results"]
    assert result["threads"] == 1 and result["runs"] >= 1 and result["median_ms"] > 0, result
    assert result["ceiling_kind"] == "int8" and result["ceiling_gflops"] > 0, result


def test_a_profile_measured_under_emulated_aarch64_plans_a_model_whose_bundle_runs_there(arm_env, tmp_path):
    """The latency-budget path for a board, end to end: profile models travel in a bundle, run.py --profile
    measures them on the (emulated) board, compress plans against that profile on the host, and the plan's
    int8 export runs there. Emulated timings mean nothing; the path has to work."""
    import torch
    from transformers import AutoTokenizer, BertModel

    from conftest import sentiment_rows, tiny_config, write_jsonl
    from sensi_edge.loading import default_model_path

    base = tmp_path / "base"
    torch.manual_seed(0)
    # wide enough that a head and a neuron cost measurable time even under emulation
    BertModel(tiny_config(layers=2, heads=4, hidden=128, ffn=512)).save_pretrained(base)
    AutoTokenizer.from_pretrained(default_model_path()).save_pretrained(base)
    data = tmp_path / "data"
    write_jsonl(data / "train.jsonl", sentiment_rows(64))
    write_jsonl(data / "validation.jsonl", sentiment_rows(16, seed=1))
    runner = CliRunner()
    res = runner.invoke(app, ["profile", "--model", str(base), "--output", str(tmp_path / "host.json"), "--points", "6",
                              "--seconds", "0.05", "--seq-len", "32", "--keep-models", str(tmp_path / "pm")])
    assert res.exit_code == 0, res.stderr
    res = runner.invoke(app, ["export", str(base), "--onnx", "--output", str(tmp_path / "dense-onnx"), "--task", "sst2",
                              "--data", str(data), "--max-metric-drop", "100"])
    assert res.exit_code == 0, res.stderr
    carrier = tmp_path / "carrier"
    res = runner.invoke(app, ["bundle", str(tmp_path / "dense-onnx" / "model_int8_dynamic.onnx"), "--output", str(carrier),
                              "--seq-len", "32", "--profile-models", str(tmp_path / "pm")])
    assert res.exit_code == 0, res.stderr
    run = _script("run", str(carrier), "--profile", "--runs", "20", "--seconds", "0.5", "--warmup", "2", "--threads", "1",
                  timeout=1800)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    prof = json.loads((carrier / "profile.json").read_text())
    assert prof["environment"]["cpu"]["machine"] == "aarch64" and prof["seq_len"] == 32
    budget = round(0.7 * prof["points"][0]["median_ms"], 4)
    res = runner.invoke(app, ["compress", "--model", str(base), "--task", "sst2", "--data", str(data), "--output",
                              str(tmp_path / "run"), "--epochs", "1", "--batch-size", "16", "--calibration-samples", "16",
                              "--budget-kind", "latency", "--budget", str(budget), "--latency-profile",
                              str(carrier / "profile.json")])
    assert res.exit_code == 0, res.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["latency_prediction"]["trimmed_ms"] <= budget and report["budget"]["kind"] == "latency"
    res = runner.invoke(app, ["export", str(tmp_path / "run" / "model"), "--onnx", "--output", str(tmp_path / "run-onnx"),
                              "--max-metric-drop", "100"])
    assert res.exit_code == 0, res.stderr
    planned = tmp_path / "planned"
    res = runner.invoke(app, ["bundle", str(tmp_path / "run-onnx" / "model_int8_dynamic.onnx"), "--output", str(planned),
                              "--seq-len", "32"])
    assert res.exit_code == 0, res.stderr
    run = _script("run", str(planned), *RUN_ARGS, timeout=900)
    assert run.returncode == 0 and "output check: OK" in run.stdout, f"{run.stdout}\n{run.stderr}"
    assert json.loads((planned / "report.json").read_text())["environment"]["cpu"]["machine"] == "aarch64"
