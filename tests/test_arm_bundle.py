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
