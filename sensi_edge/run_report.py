"""The compress run's report: what was kept, what it scores, what it cost (report.json / report.md).

Built once, by rank 0, from the stages' artifacts; parameter counts are read from the saved tensors
themselves, never from a config, so the report states what is on disk.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import distributed
from .methods import get_method


def _json_or_empty(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def count_saved_params(model_dir: Path) -> dict[str, int]:
    """Parameter counts read from the saved tensors themselves (not from the config)."""
    from safetensors import safe_open

    from .arch import BertAdapter  # the only family; saved tensors carry no model type to dispatch on

    counts = {"encoder": 0, "total": 0}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(f), "pt") as st:
            for key in st.keys():
                n = 1
                for s in st.get_slice(key).get_shape():
                    n *= s
                counts["total"] += n
                if BertAdapter.is_encoder_tensor(key):
                    counts["encoder"] += n
    return counts


def fisher_predicted(sens) -> dict[str, float]:
    """Per group, the Fisher estimate of its probe's loss increase (the quantity the probes calibrate);
    its ranking is what the sweep page's seed-to-seed rank stability is computed on."""
    from .planner import fisher_predicted as predicted

    return {f"L{layer}.{kind}": v for (layer, kind), v in predicted(sens).items()}


def _params_section(plan, saved: dict, dense_enc: int) -> dict:
    from .cost import encoder_params

    return {
        "counted_from": "saved safetensors; encoder = parameters inside encoder layers (embeddings, pooler, head excluded)",
        "encoder_before": dense_enc,
        "encoder_after_planned": encoder_params(plan.trimmed),
        "encoder_after_saved": saved["encoder"],
        "encoder_ratio": saved["encoder"] / dense_enc,
        "total_after_saved": saved["total"],
        "total_before": saved["total"] - saved["encoder"] + dense_enc,
    }


def _flops_section(plan, seq: int) -> dict:
    from .cost import encoder_flops

    before, after = encoder_flops(plan.dense, seq), encoder_flops(plan.trimmed, seq)
    return {"seq_len": seq, "counted": "encoder matmul FLOPs (2 x MACs) per sequence", "encoder_before": before,
            "encoder_after": after, "encoder_ratio": after / before}


def _sensitivity_section(cfg, sens) -> dict:
    return {"method": sens.method, "probe_density": sens.probe_density,
            "calibration_rows": sens.calibration_rows, "warmup_fraction": cfg.effective_warmup_fraction,
            "analysed_model": "dense fine-tune" if cfg.baseline else "warm-up fine-tune",
            "seconds": round(sens.seconds, 1),
            "group_scores": {f"L{g.layer}.{g.kind}": g.score for g in sens.groups},
            "group_score_se": {f"L{g.layer}.{g.kind}": g.score_se for g in sens.groups},
            "fisher_predicted": fisher_predicted(sens),
            "ranking_least_to_most": [f"L{g.layer}.{g.kind}" for g in sorted(sens.groups, key=lambda g: g.score)]}


def build_report(cfg, task, model_spec, plan, sens, baseline, trim_info, metrics, model_dir, n_train, n_calib,
                  n_val, recipe_steps, seconds, seq) -> dict:
    from .cost import encoder_params

    saved = count_saved_params(model_dir)
    dense_enc = encoder_params(plan.dense)
    total = sum(seconds.values())
    reused = _json_or_empty(Path(model_dir).parent / "reused_timings.json")
    whole = {**reused, **seconds}  # a whole run's stages: this run's own plus the ones it reused
    whole_total = sum(whole.values())
    sens_share = (whole.get("warmup", 0) + whole.get("sensitivity", 0)) / whole_total if whole_total else 0.0
    return {
        "task": task.to_dict(),
        "model": model_spec,
        "data": str(Path(cfg.data).expanduser().resolve()) if Path(cfg.data).expanduser().exists() else cfg.data,
        "metric": task.metric,
        "method": cfg.method,
        "reused_stages_from": str(cfg.reuse) if cfg.reuse else None,
        "rows": {"train": n_train, "calibration_held_out": n_calib, "validation": n_val},
        "recipe": cfg.recipe.to_dict(),
        # what the trimmed fine-tune ran and why (trim_rule.choose, recorded by the trim stage); None for a
        # retraining-free method (fisher-mask), which runs no trimmed fine-tune
        "trim_recipe": trim_info.train.get("trim_recipe"),
        "trim_rule": trim_info.train.get("trim_rule"),
        "recipe_steps": recipe_steps,
        "dense_baseline": baseline.metrics if baseline else None,
        "compressed": metrics,
        "metric_delta": (metrics[task.metric] - baseline.metrics[task.metric]) if baseline else None,
        "params": _params_section(plan, saved, dense_enc),
        "flops": _flops_section(plan, seq),
        "budget": plan.budget,
        "latency_prediction": _latency_prediction(cfg, plan),
        "plan": {"heads_per_layer": list(plan.trimmed.heads), "ffn_per_layer": list(plan.trimmed.ffn),
                 "dense_heads": list(plan.dense.heads), "dense_ffn": list(plan.dense.ffn)},
        "sensitivity": _sensitivity_section(cfg, sens),
        "allocation": {"name": cfg.allocation if get_method(cfg.method).own_allocation else None,
                       "floors": plan.source.get("floors"), "calibration": plan.source.get("calibration")},
        "accurate": cfg.accurate,  # --accurate: the three settings below and trim_recipe came from it
        "distill": cfg.distill,
        "distill_hidden": cfg.distill_hidden,
        "masked_vs_pruned_max_abs_diff": trim_info.masked_vs_pruned_max_abs_diff,
        "trim_steps": trim_info.steps,  # optimizer steps of the trimmed fine-tune (0: fisher-mask)
        "wall_seconds": {**{k: round(v, 1) for k, v in seconds.items()}, "total": round(total, 1)},
        "reused_wall_seconds": {k: round(v, 1) for k, v in reused.items()},
        "whole_run_wall_seconds": round(whole_total, 1),
        "sensitivity_share_of_wall_time": round(sens_share, 4),
        "threads": __import__("torch").get_num_threads(),
        **_launch_facts(cfg),
        "sessions": json.loads((Path(model_dir).parent / "run.json").read_text()).get("sessions", 1),
    }


def _latency_prediction(cfg, plan) -> dict | None:
    """Predicted ms per sequence of the dense and the trimmed model from --latency-profile (None without one);
    ``bench`` measures the exported model against it."""
    if cfg.latency_profile is None:
        return None
    from .latency import load_profile

    m = load_profile(cfg.latency_profile)
    return {"profile": str(Path(cfg.latency_profile).expanduser().resolve()), "seq_len": m.seq_len,
            "threads": m.threads, "precision": m.precision, "cpu": m.cpu,
            "dense_ms": round(m.predict_ms(plan.dense), 4), "trimmed_ms": round(m.predict_ms(plan.trimmed), 4)}


def _launch_facts(cfg) -> dict:
    """How the run was launched: processes (torchrun / accelerate launch), the device they trained on,
    the fine-tuning precision."""
    w = distributed.world()
    return {"world_size": w.size, "device_type": distributed.device_for(w).split(":")[0],
            "precision": cfg.recipe.precision}


def render_markdown(r: dict) -> str:
    m = r["metric"]
    base = r["dense_baseline"][m] if r["dense_baseline"] else None
    lines = [
        f"# sensi-edge compress report: {r['task']['name']}",
        "",
        f"- model: `{r['model']}`",
        f"- data: `{r['data']}` (train {r['rows']['train']}, held-out calibration {r['rows']['calibration_held_out']}, "
        f"validation {r['rows']['validation']})",
        f"- budget: {r['budget']['value']} of encoder {r['budget']['kind']}" + (" (absolute)" if r["budget"]["absolute"] else "")
        + f" at seq len {r['budget']['seq_len']}",
        "",
        "| | dense baseline | compressed |",
        "|---|---|---|",
        f"| validation {m} | {base:.2f} |" if base is not None else f"| validation {m} | (not run) |",
    ]
    lines[-1] += f" {r['compressed'][m]:.2f} |"
    p, f = r["params"], r["flops"]
    lines += [
        f"| encoder params | {p['encoder_before']:,} | {p['encoder_after_saved']:,} ({p['encoder_ratio']:.1%}) |",
        f"| total params | {p['total_before']:,} | {p['total_after_saved']:,} |",
        f"| encoder GFLOPs @ seq {f['seq_len']} | {f['encoder_before'] / 1e9:.3f} | {f['encoder_after'] / 1e9:.3f} ({f['encoder_ratio']:.1%}) |",
        "",
        f"Heads per layer: {r['plan']['heads_per_layer']} (of {r['plan']['dense_heads']})  ",
        f"FFN neurons per layer: {r['plan']['ffn_per_layer']} (of {r['plan']['dense_ffn']})  ",
        f"Masked vs pruned max |logit diff|: {r['masked_vs_pruned_max_abs_diff']:.2e}  ",
        f"Analysed and trimmed from: the {r['sensitivity']['analysed_model']}; method {r['method']}"
        + (f", allocation {r['allocation']['name']}, floors {r['allocation']['floors']}" if r["allocation"]["name"] else "")
        + f"; distilled from the dense model: {'yes' if r['distill'] else 'no'}  ",
        *([f"Trimmed fine-tune: {r['trim_steps']} steps, {r['trim_recipe']['epochs']:g} epochs at learning rate "
           f"{r['trim_recipe']['learning_rate']:g} ({r['trim_rule']['rule']}: {r['trim_rule']['why']})"]
          if r.get("trim_rule") else []),
        "",
        "Wall time (s): " + ", ".join(f"{k} {v}" for k, v in r["wall_seconds"].items())
        + (f"; reused from {r['reused_stages_from']}: " + ", ".join(f"{k} {v}" for k, v in r["reused_wall_seconds"].items())
           + f" (whole run {r['whole_run_wall_seconds']})" if r.get("reused_wall_seconds") else "")
        + f"; sensitivity (warm-up + probes) = {r['sensitivity_share_of_wall_time']:.1%} of the whole run; {r['threads']} threads.",
        "",
    ]
    return "\n".join(lines)
