"""The CLI is generated from the config dataclasses: every field is a flag with the field's help, and the
flags build the very config a library caller would (sensi_edge/options.py, cli/generate.py)."""
import dataclasses
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from sensi_edge.bench import BenchConfig
from sensi_edge.compress import CompressConfig
from sensi_edge.export import ExportConfig
from sensi_edge.latency import ProfileConfig
from sensi_edge.options import described
from sensi_edge.recipe import Recipe


def _shown(cls):
    """(flag, help) of every field the command line shows, nested configs flattened."""
    out = []
    for f, meta in described(cls):
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            out += _shown(f.default_factory)
        elif not meta["argument"]:
            out.append(("--" + (meta["flag"] or f.name).replace("_", "-"), meta["help"]))
    return out


@pytest.mark.parametrize("command,cls", [("compress", CompressConfig), ("export", ExportConfig), ("profile", ProfileConfig),
                                         ("bench", BenchConfig)])
def test_every_config_field_is_a_flag_with_its_help(command, cls):
    res = CliRunner().invoke(app, [command, "--help"], terminal_width=400, env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.replace("│", " ").split())
    for flag, help_text in _shown(cls):
        assert flag in text, flag
        assert " ".join(help_text.split())[:40] in text, (flag, help_text)
    assert len(_shown(cls)) == {"compress": 37, "export": 18, "profile": 10, "bench": 11}[command]  # no field silently dropped


def test_library_only_settings_stay_off_the_command_line():
    res = CliRunner().invoke(app, ["compress", "--help"], env={"COLUMNS": "400"})
    for hidden in ("--save-steps", "--weight-decay", "--warmup-ratio", "--precision", "--recipe"):
        assert hidden not in res.output


def test_the_flags_build_the_config_a_library_caller_would(compress_calls, tmp_path):
    args = ["compress", "--task", "text-classification", "--data", "d", "--output", str(tmp_path / "o"),
            "--budget", "0.3", "--budget-kind", "flops", "--epochs", "2", "--learning-rate", "1e-4", "--batch-size",
            "16", "--seed", "7", "--sensitivity", "fisher", "--probe-density", "0.25", "--allocation", "rank",
            "--floor-heads", "0.2", "--distill", "--distill-hidden", "1", "--trim-epochs", "4", "--method", "uniform",
            "--text-column", "a", "--text-column", "b", "--label-column", "y", "--num-labels", "3",
            "--keep-intermediate", "--bf16", "--resume"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 130, res.output
    want = CompressConfig(task="text-classification", data="d", output=tmp_path / "o", budget=0.3, budget_kind="flops",
                          recipe=Recipe(epochs=2.0, learning_rate=1e-4, batch_size=16, seed=7, precision="bf16"),
                          sensitivity_method="fisher", probe_density=0.25, allocation="rank", floor_heads=0.2,
                          distill=True, distill_hidden=1.0, trim_epochs=4.0, method="uniform", text_columns=("a", "b"),
                          label_column="y", num_labels=3, keep_intermediate=True)
    assert compress_calls == [(want, True)]


def test_accurate_is_the_measured_recipe_and_explicit_flags_win(compress_calls, tmp_path):
    """--accurate = --distill --distill-hidden 1 --trim-epochs 2x --epochs (issue 12's rows); a flag given beside
    it keeps its value, and the resolved config is what a caller spelling the flags out would build."""
    base = ["compress", "--task", "sst2", "--data", "d", "--output", str(tmp_path / "o"), "--epochs", "2"]
    for extra in (["--accurate"], ["--accurate", "--trim-epochs", "3", "--distill-hidden", "0.5"], []):
        assert CliRunner().invoke(app, base + extra).exit_code == 130
    accurate, explicit, default = (cfg for cfg, _ in compress_calls)
    spelled = CompressConfig(task="sst2", data="d", output=tmp_path / "o", recipe=Recipe(epochs=2.0), distill=True,
                             distill_hidden=1.0, trim_epochs=4.0)
    assert (accurate.distill, accurate.distill_hidden, accurate.trim_recipe) == \
        (spelled.distill, spelled.distill_hidden, spelled.trim_recipe)
    assert (explicit.distill, explicit.distill_hidden, explicit.trim_epochs) == (True, 0.5, 3.0)
    assert (default.distill, default.distill_hidden, default.trim_epochs) == (False, 0.0, None)


def test_the_export_flags_build_its_config(monkeypatch, tmp_path):
    export_module = sys.modules["sensi_edge.export"]
    seen = {}

    def capture(cfg, log=print):
        seen["cfg"] = cfg
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "export", capture)
    res = CliRunner().invoke(app, ["export", str(tmp_path), "--onnx", "--output", str(tmp_path / "o"), "--quantize",
                                   "dynamic", "--quantize", "static", "--split", "test", "--no-per-channel",
                                   "--layernorm", "skip"])
    assert res.exit_code == 130, res.output
    assert seen["cfg"] == ExportConfig(model_dir=Path(tmp_path), output=tmp_path / "o", quantize=("dynamic", "static"),
                                       eval_split="test", per_channel=False, layernorm="skip")


def test_the_bench_flags_build_its_config(monkeypatch, tmp_path):
    bench_module = sys.modules["sensi_edge.bench"]
    seen = {}

    def capture(cfg, log=print):
        seen["cfg"] = cfg
        raise KeyboardInterrupt

    monkeypatch.setattr(bench_module, "bench", capture)
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    res = CliRunner().invoke(app, ["bench", str(a), str(b), "--threads", "1", "--runs", "7", "--seconds", "0.5",
                                   "--no-baseline", "--output", str(tmp_path / "r.json")])
    assert res.exit_code == 130, res.output
    assert seen["cfg"] == BenchConfig(models=(a, b), auto_baseline=False, threads=(1,), min_runs=7, min_seconds=0.5)
