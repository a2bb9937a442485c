"""Budget accounting against hand counts and real tensors; the planner meets budgets."""
import random

import pytest

from sensi_edge.artifacts import DenseBaseline, GroupSensitivity, SensitivityReport, TrimPlan, TrimResult
from sensi_edge.cost import Geometry, encoder_flops, encoder_params, unit_cost
from sensi_edge.errors import SensiEdgeError
from sensi_edge.planner import Budget, allocate, build_plan

from conftest import tiny_config

MINILM = Geometry(hidden=384, head_dim=32, heads=(12,) * 6, ffn=(1536,) * 6)


def test_minilm_encoder_params_hand_count():
    # one layer: Q,K,V,O = 4 x (384*384 + 384); FFN = 384*1536 + 1536 + 1536*384 + 384; 2 LayerNorms = 4*384
    per_layer = 4 * (384 * 384 + 384) + (384 * 1536 + 1536) + (1536 * 384 + 384) + 4 * 384
    assert per_layer == 1_774_464
    assert encoder_params(MINILM) == 6 * per_layer


def test_encoder_params_match_torch_for_irregular_model():
    from sensi_edge.surgery import apply_plan
    from transformers import BertForSequenceClassification

    cfg = tiny_config(layers=3, heads=4, hidden=32, ffn=48)
    model = BertForSequenceClassification(cfg)
    g = Geometry(32, 8, (4, 4, 4), (48, 48, 48))
    assert encoder_params(g) == sum(p.numel() for p in model.bert.encoder.parameters())
    plan = TrimPlan(g, ((1, 3), (), (0, 1, 2)), (tuple(range(10)), (7,), ()), {"kind": "params"})
    trimmed = apply_plan(model, plan)
    assert encoder_params(plan.trimmed) == sum(p.numel() for p in trimmed.bert.encoder.parameters())


def test_flops_hand_count():
    g = Geometry(hidden=4, head_dim=2, heads=(2,), ffn=(8,))
    L = 3
    qkvo = 4 * (2 * L * 4 * 4)  # four (L x 4) @ (4 x 4) products
    attn = 2 * (2 * L * L * 2) * 2  # QK^T and AV for 2 heads of width 2
    ffn = 2 * (2 * L * 4 * 8)
    assert encoder_flops(g, L) == qkvo + attn + ffn


def _random_scores(g, seed):
    rnd = random.Random(seed)
    return {(i, k): rnd.random() for i in range(g.num_layers) for k in ("attention", "ffn")}


@pytest.mark.parametrize("kind", ["params", "flops"])
@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.7, 0.95])
def test_allocate_meets_budget_within_one_unit(kind, fraction):
    for seed in range(3):
        scores = _random_scores(MINILM, seed)
        budget = Budget(kind, fraction, seq_len=128)
        keep = allocate(MINILM, scores, budget)
        kept = MINILM.with_sizes([keep[(i, "attention")] for i in range(6)], [keep[(i, "ffn")] for i in range(6)])
        cost = encoder_params(kept) if kind == "params" else encoder_flops(kept, 128)
        target = budget.target(MINILM)
        assert cost <= target
        # tolerance: nothing more fits (no group that is not full could take one more unit)
        addable = [unit_cost(MINILM, k[1], kind, 128) for k in keep
                   if keep[k] < (12 if k[1] == "attention" else 1536)]
        assert not addable or target - cost < min(addable)


def test_less_sensitive_groups_are_trimmed_more():
    scores = {(i, k): (i + (0.5 if k == "ffn" else 0)) for i in range(6) for k in ("attention", "ffn")}
    keep = allocate(MINILM, scores, Budget("params", 0.5))
    ratios = [keep[(i, "ffn")] / 1536 for i in range(6)]
    assert ratios == sorted(ratios) and ratios[0] < ratios[-1]


def test_absolute_budget_and_errors():
    keep = allocate(MINILM, _random_scores(MINILM, 0), Budget("params", 5_000_000, absolute=True))
    kept = MINILM.with_sizes([keep[(i, "attention")] for i in range(6)], [keep[(i, "ffn")] for i in range(6)])
    assert 5_000_000 - 2 * 384 - 1 <= encoder_params(kept) <= 5_000_000
    for bad in (0, -0.1, 1.5):
        with pytest.raises(SensiEdgeError, match="budget"):
            Budget("params", bad)
    with pytest.raises(SensiEdgeError, match="budget kind"):
        Budget("energy", 0.5)
    with pytest.raises(SensiEdgeError, match="cannot be trimmed"):
        allocate(MINILM, _random_scores(MINILM, 0), Budget("params", 100, absolute=True))


def test_build_plan_keeps_most_important_units_and_round_trips(tmp_path):
    g = Geometry(32, 8, (4, 4), (16, 16))
    rnd = random.Random(1)
    report = SensitivityReport(
        method="probe", probe_density=0.5, geometry=g, dense_loss=0.5, dense_metric=80.0,
        groups=tuple(GroupSensitivity(i, k, rnd.random()) for i in range(2) for k in ("attention", "ffn")),
        head_importance=tuple(tuple(rnd.random() for _ in range(4)) for _ in range(2)),
        neuron_importance=tuple(tuple(rnd.random() for _ in range(16)) for _ in range(2)),
        calibration_rows=8, seconds=0.1,
    )
    plan = build_plan(report, Budget("params", 0.5))
    for layer in range(2):
        kept = plan.keep_neurons[layer]
        dropped = set(range(16)) - set(kept)
        if kept and dropped:
            imp = report.neuron_importance[layer]
            assert min(imp[j] for j in kept) >= max(imp[j] for j in dropped)
    plan.save(tmp_path / "plan.json")
    assert TrimPlan.load(tmp_path / "plan.json") == plan
    report.save(tmp_path / "s.json")
    assert SensitivityReport.load(tmp_path / "s.json") == report
    assert plan.source["sensitivity"] == report.hash()


@pytest.mark.parametrize("artifact", [DenseBaseline({"accuracy": 81.5}, {"steps": 250, "loss": 0.4}),
                                      TrimResult({"steps": 0, "note": "retraining-free"}, 3.1e-07)])
def test_stage_artifacts_round_trip_and_refuse_a_newer_schema(tmp_path, artifact):
    """baseline.json and trim.json: typed, written atomically, read back equal; a file from a newer schema is
    refused with its fix instead of being misread; a file written before schema_version existed still reads."""
    import json
    from dataclasses import replace

    path = tmp_path / "a.json"
    artifact.save(path)
    assert type(artifact).load(path) == artifact and json.loads(path.read_text())["schema_version"] == 1
    old = {k: v for k, v in artifact.to_dict().items() if k != "schema_version"}
    path.write_text(json.dumps(old))
    assert type(artifact).load(path) == artifact
    replace(artifact, schema_version=2).save(path)
    with pytest.raises(SensiEdgeError, match="newer sensi-edge .*upgrade"):
        type(artifact).load(path)
    for bad, message in (('{"train": {}', "cannot read .*JSONDecodeError.*rerun the stage"), ("[1, 2]", "JSON list"),
                         (json.dumps({**old, "surprise": 1}), "not a file this sensi-edge can read"),
                         (json.dumps({"schema_version": 1}), "lacks|not a file this sensi-edge can read")):
        path.write_text(bad)
        with pytest.raises(SensiEdgeError, match=message):
            type(artifact).load(path)


def test_only_the_compressed_model_folder_takes_its_runs_report(tmp_path):
    """A kept OUT/dense_model must not be described by OUT/report.json (that scores OUT/model)."""
    import json

    from sensi_edge.artifacts import compress_report_for

    run = tmp_path / "run"
    for sub in ("model", "dense_model", "warm_model"):
        (run / sub).mkdir(parents=True)
    (run / "report.json").write_text(json.dumps({"compressed": {"accuracy": 80.0}, "task": {"name": "sst2"}, "data": "d",
                                                 "model": "base", "metric": "accuracy"}))
    facts = compress_report_for(run / "model")
    assert facts.metric_value == 80.0 and facts.base_model == "base" and facts.task["name"] == "sst2"
    assert compress_report_for(run / "dense_model") is None and compress_report_for(run / "warm_model") is None


def test_an_onnx_file_finds_its_exports_facts_also_when_rejected(tmp_path):
    import json

    from sensi_edge.artifacts import export_report_for

    (tmp_path / "onnx" / "rejected").mkdir(parents=True)
    (tmp_path / "onnx" / "export_report.json").write_text(json.dumps({
        "model_dir": "m", "metric": "accuracy", "geometry": {"hidden": 8, "head_dim": 4, "heads": [2], "ffn": [4]},
        "variants": [{"file": "model.onnx", "metrics": {"accuracy": 81.0}},
                     {"file": "rejected/model_int8_static.onnx", "metrics": {"accuracy": 50.0}}]}))
    fp32 = export_report_for(tmp_path / "onnx" / "model.onnx")
    assert fp32.metric_of(tmp_path / "onnx" / "model.onnx") == 81.0 and fp32.geometry.heads == (2,)
    rejected = tmp_path / "onnx" / "rejected" / "model_int8_static.onnx"
    assert export_report_for(rejected).metric_of(rejected) == 50.0
    assert export_report_for(tmp_path / "elsewhere.onnx") is None
    (tmp_path / "onnx" / "export_report.json").write_text('{"model_dir": "m"}')
    with pytest.raises(SensiEdgeError, match="export_report.json lacks 'geometry'.*rerun export"):
        export_report_for(tmp_path / "onnx" / "model.onnx")
