"""Latency profiles and latency budgets: the fit, the profile file, the planner meeting a predicted latency,
and compress planning against a profile. No wall-clock assertion: timings here only have to exist."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from cli.main import app
from sensi_edge.bundle_runtime import PROFILE_SCHEMA, fit_latency
from sensi_edge.cost import Geometry
from sensi_edge.errors import SensiEdgeError
from sensi_edge.latency import LatencyModel, load_profile, profile_geometries
from sensi_edge.planner import Budget, Floors, select_units

MINILM = Geometry(384, 32, (12,) * 6, (1536,) * 6)


def _points(geoms, fixed, head, neuron, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return [{"heads": list(g.heads), "ffn": list(g.ffn),
             "median_ms": (fixed + head * sum(g.heads) + neuron * sum(g.ffn)) * (1 + noise * rng.standard_normal())}
            for g in geoms]


def _profile_file(path, geometry, fixed=1.0, head=0.05, neuron=0.002, threads=1, seq_len=128):
    pts = _points(profile_geometries(geometry, 8), fixed, head, neuron)
    path.write_text(json.dumps({"schema": PROFILE_SCHEMA, "threads": threads, "seq_len": seq_len, "batch": 1,
                                "precision": "int8", "geometry": geometry.to_dict(), "points": pts,
                                "environment": {"cpu": {"model": "test cpu"}}, "fit": fit_latency(pts)}))
    return path


def test_the_fit_recovers_a_planted_line_and_reports_its_error():
    geoms = profile_geometries(MINILM, 10)
    fit = fit_latency(_points(geoms, 1.5, 0.07, 0.0021))
    assert (fit["fixed_ms"], fit["per_head_ms"], fit["per_neuron_ms"]) == pytest.approx((1.5, 0.07, 0.0021), rel=1e-9)
    assert fit["r2"] == pytest.approx(1.0) and fit["loo_max_rel_error"] < 1e-9
    noisy = fit_latency(_points(geoms, 1.5, 0.07, 0.0021, noise=0.05))
    assert 0.005 < noisy["loo_max_rel_error"] < 0.5 and noisy["r2"] < 1.0


def test_profile_geometries_span_dense_to_nearly_empty_and_are_irregular():
    geoms = profile_geometries(MINILM, 12)
    assert geoms[0] == MINILM and sum(geoms[1].heads) == 6 and len(geoms) == 12
    assert all(1 <= h <= 12 for g in geoms for h in g.heads) and all(1 <= f <= 1536 for g in geoms for f in g.ffn)
    assert any(len(set(g.heads)) > 1 for g in geoms[2:])  # per-layer sizes differ, as plans make them
    assert profile_geometries(MINILM, 12) == geoms  # deterministic: a board times the same models
    with pytest.raises(SensiEdgeError, match="--points must be >= 4"):
        profile_geometries(MINILM, 3)


@pytest.mark.parametrize("ms", [5.0, 9.3, 15.0])
def test_a_latency_budget_is_met_by_the_prediction_within_one_unit(ms):
    model = LatencyModel(1.0, 0.05, 0.002, 128, 1, "int8", MINILM)
    budget = Budget("latency", ms, latency=model)
    rnd = np.random.default_rng(1)
    keep_h, keep_n = select_units(MINILM, [rnd.random(12) for _ in range(6)], [rnd.random(1536) for _ in range(6)],
                                  budget, floors=Floors(0.15, 0.1))
    g = MINILM.with_sizes([len(k) for k in keep_h], [len(k) for k in keep_n])
    predicted = model.predict_ms(g)
    assert predicted <= ms + 1e-12
    assert ms - predicted < 0.05 + 1e-9  # nothing more would fit: within one head's cost of the budget
    assert min(g.heads) >= 2 and min(g.ffn) >= 154


def test_latency_budgets_are_refused_without_a_profile_or_below_the_fixed_cost():
    with pytest.raises(SensiEdgeError, match="needs a latency profile; pass --latency-profile"):
        Budget("latency", 3.0)
    model = LatencyModel(1.0, 0.05, 0.002, 128, 1, "int8", MINILM)
    with pytest.raises(SensiEdgeError, match="below the 1.000 ms that cannot be trimmed"):
        select_units(MINILM, [np.ones(12)] * 6, [np.ones(1536)] * 6, Budget("latency", 0.9, latency=model))


def test_profile_files_load_and_bad_ones_say_what_to_do(tmp_path):
    m = load_profile(_profile_file(tmp_path / "p.json", MINILM))
    assert (m.per_head_ms, m.per_neuron_ms, m.cpu) == (pytest.approx(0.05), pytest.approx(0.002), "test cpu")
    with pytest.raises(SensiEdgeError, match="does not exist; make one with `sensi-edge profile"):
        load_profile(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text(json.dumps({"schema": "something/else"}))
    with pytest.raises(SensiEdgeError, match="is not a sensi-edge latency profile"):
        load_profile(tmp_path / "other.json")
    with pytest.raises(SensiEdgeError, match="not both positive"):
        load_profile(_profile_file(tmp_path / "neg.json", MINILM, head=-0.01))
    with pytest.raises(SensiEdgeError, match="was measured for 6 layers of hidden size 384"):
        m.check_fits(Geometry(32, 8, (4,) * 3, (48,) * 3))


def test_profile_command_times_real_onnx_models_and_writes_a_loadable_profile(tiny_model_dir, tmp_path):
    out, keep = tmp_path / "profile.json", tmp_path / "models"
    res = CliRunner().invoke(app, ["profile", "--model", str(tiny_model_dir), "--output", str(out), "--points", "4",
                                   "--seconds", "0.05", "--seq-len", "32", "--keep-models", str(keep)])
    assert res.exit_code == 0, res.stderr
    d = json.loads(out.read_text())
    assert d["schema"] == PROFILE_SCHEMA and d["threads"] == 1 and d["seq_len"] == 32 and len(d["points"]) == 4
    assert all(p["median_ms"] > 0 and p["runs"] >= 50 for p in d["points"])
    assert d["environment"]["cpu"]["model"] and d["environment"]["versions"]["onnxruntime"]
    kept = json.loads((keep / "points.json").read_text())
    assert [p["heads"] for p in kept["points"]] == [p["heads"] for p in d["points"]]
    assert all((keep / p["file"]).is_file() and "int8" in p["file"] for p in kept["points"])
    # the profile's models have the graph of a real export: no run-time DequantizeLinear of shared LayerNorm weights
    for p in kept["points"]:
        assert "DequantizeLinear" not in {n.op_type for n in onnx.load(str(keep / p["file"])).graph.node}
    res = CliRunner().invoke(app, ["profile", "--model", str(tiny_model_dir), "--output", str(out)])
    assert res.exit_code == 2 and "exists and was not written by sensi-edge" in res.stderr


def test_compress_plans_against_a_latency_profile(tiny_model_dir, tiny_sst2_dir, tmp_path):
    from sensi_edge.compress import CompressConfig, compress
    from sensi_edge.finetune import Recipe

    tiny = Geometry(32, 8, (4,) * 3, (48,) * 3)
    prof = _profile_file(tmp_path / "p.json", tiny, fixed=0.2, head=0.02, neuron=0.0005)
    cfg = CompressConfig(task="sst2", data=str(tiny_sst2_dir), output=tmp_path / "run", model=str(tiny_model_dir),
                         budget=0.34, budget_kind="latency", latency_profile=prof,
                         recipe=Recipe(epochs=1, batch_size=8), calibration_samples=8)
    r = compress(cfg, log=lambda m: None).report
    lat = r["latency_prediction"]
    assert lat["dense_ms"] == pytest.approx(0.2 + 12 * 0.02 + 144 * 0.0005)
    assert lat["trimmed_ms"] <= 0.34 and 0.34 - lat["trimmed_ms"] < 0.02 + 1e-9
    assert r["budget"]["kind"] == "latency" and r["budget"]["latency_model"]["per_head_ms"] == pytest.approx(0.02)
    res = CliRunner().invoke(app, ["compress", "--model", str(tiny_model_dir), "--task", "sst2", "--data",
                                   str(tiny_sst2_dir), "--output", str(tmp_path / "r2"), "--budget-kind", "latency",
                                   "--budget", "0.3", "--latency-profile", str(_profile_file(tmp_path / "m.json", MINILM))])
    assert res.exit_code == 2 and "run `sensi-edge profile --model` with this model" in res.stderr
    assert not any(tmp_path.glob("r2*"))


def test_a_bundle_measures_a_profile_and_real_texts_on_the_board(irregular_export, sst2_dir, tiny_model_dir, tmp_path):
    """run.py (numpy + onnxruntime only) times the bundled profile models into a profile the planner loads,
    and times the bundled validation texts at their own lengths."""
    import subprocess
    import sys

    _, onnx_dir, _ = irregular_export
    models = tmp_path / "pm"
    assert CliRunner().invoke(app, ["profile", "--model", str(tiny_model_dir), "--output", str(tmp_path / "p.json"),
                                    "--points", "4", "--seconds", "0.05", "--seq-len", "32",
                                    "--keep-models", str(models)]).exit_code == 0
    out = tmp_path / "bundle"
    res = CliRunner().invoke(app, ["bundle", str(onnx_dir / "model_int8_dynamic.onnx"), "--output", str(out),
                                   "--seq-len", "32", "--profile-models", str(models), "--texts-from", str(sst2_dir),
                                   "--task", "sst2", "--texts", "10"])
    assert res.exit_code == 0, res.stderr
    fast = ["--runs", "3", "--seconds", "0.05", "--warmup", "1", "--threads", "1"]
    prof = subprocess.run([sys.executable, str(out / "run.py"), "--profile", *fast], capture_output=True, text=True)
    assert prof.returncode == 0, prof.stderr
    d = json.loads((out / "profile.json").read_text())
    assert d["schema"] == PROFILE_SCHEMA and d["seq_len"] == 32 and len(d["points"]) == 4 and "fit" in d
    run = subprocess.run([sys.executable, str(out / "run.py"), *fast, "--ceiling-seconds", "0.01", "--ceiling-runs", "2"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    real = [x for x in json.loads((out / "report.json").read_text())["results"] if x.get("inputs") == "real"]
    assert len(real) == 1 and real[0]["texts"] == 10 and real[0]["runs"] == 20 and real[0]["mean_tokens"] > 3
    bad = CliRunner().invoke(app, ["bundle", str(onnx_dir / "model_int8_dynamic.onnx"), "--output", str(tmp_path / "b2"),
                                   "--profile-models", str(tmp_path)])
    assert bad.exit_code == 2 and "has no points.json" in bad.stderr and not (tmp_path / "b2").exists()
