"""Pins the method itself: importance, sensitivity and allocation point the right way.

Each test plants a unit or group whose importance is known by construction, so flipping the sign
of the Fisher importance, of the probe score or of the calibration, or keeping the wrong end of a
ranking, makes a test here fail.
"""
import json
import random

import numpy as np
import pytest
import torch

from sensi_edge.artifacts import GroupSensitivity, SensitivityReport
from sensi_edge.cost import Geometry, encoder_cost, unit_cost
from sensi_edge.errors import SensiEdgeError
from sensi_edge.planner import Budget, Floors, build_plan, calibration, select_units
from sensi_edge.sensitivity import analyse, calibration_loss, unit_importance

from conftest import label_with_own_predictions, model_and_batches






def test_a_planted_head_and_neuron_rank_first_and_are_kept():
    model, batches = model_and_batches()
    with torch.no_grad():
        o = model.bert.encoder.layer[0].attention.output.dense.weight  # columns = head outputs
        for h in (0, 1, 3):
            o[:, h * 8:(h + 1) * 8] = 0  # heads 0, 1, 3 of layer 0 no longer reach the residual stream
        o[:, 16:24] *= 3
        out = model.bert.encoder.layer[1].output.dense.weight  # columns = FFN neurons
        keep = out[:, 5].clone() * 3
        out.zero_()
        out[:, 5] = keep  # only neuron 5 of layer 1 does anything
    batches = label_with_own_predictions(model, batches)
    heads, neurons = unit_importance(model, batches)
    assert int(np.argmax(heads[0])) == 2 and heads[0][2] > 0 and heads[0][[0, 1, 3]].max() == 0
    assert int(np.argmax(neurons[1])) == 5 and neurons[1][5] > 0 and np.delete(neurons[1], 5).max() == 0
    report = analyse(model, batches, probe_density=0.5)
    plan = build_plan(report, Budget("params", 0.3), floors=Floors(0.25, 0.05))
    assert 2 in plan.keep_heads[0] and 5 in plan.keep_neurons[1]


def test_probe_scores_rise_with_what_a_group_carries():
    """A group that contributes nothing scores ~0; an amplified one scores clearly above it."""
    model, batches = model_and_batches(seed=1)
    with torch.no_grad():
        model.bert.encoder.layer[0].output.dense.weight.zero_()  # layer 0's FFN adds only its bias
        model.bert.encoder.layer[1].output.dense.weight.mul_(4.0)  # layer 1's FFN dominates
    batches = label_with_own_predictions(model, batches)
    dense_loss, _ = calibration_loss(model, batches)
    report = analyse(model, batches, probe_density=0.25)
    scores = report.scores()
    assert abs(scores[(0, "ffn")]) < 1e-6
    assert scores[(1, "ffn")] > 0.005 and scores[(1, "ffn")] > 100 * abs(scores[(0, "ffn")])
    assert report.dense_loss == pytest.approx(dense_loss)
    g = next(g for g in report.groups if (g.layer, g.kind) == (1, "ffn"))
    assert g.loss == pytest.approx(dense_loss + g.score)


def _report(geometry, head_imp, neuron_imp, scores, density=0.5, se=None):
    se = se or {}
    return SensitivityReport(
        method="probe", probe_density=density, geometry=geometry, dense_loss=0.5, dense_metric=80.0,
        groups=tuple(GroupSensitivity(i, k, scores[(i, k)], score_se=se.get((i, k)))
                     for i in range(geometry.num_layers) for k in ("attention", "ffn")),
        head_importance=tuple(tuple(float(x) for x in a) for a in head_imp),
        neuron_importance=tuple(tuple(float(x) for x in a) for a in neuron_imp),
        calibration_rows=64, seconds=0.0)


G = Geometry(hidden=64, head_dim=16, heads=(4, 4, 4), ffn=(64, 64, 64))


def test_calibration_moves_budget_towards_the_group_whose_probe_hurt_more():
    rnd = np.random.default_rng(0)
    head_imp = [16 * (rnd.random(4) + 1) for _ in range(3)]  # a probe removes as much Fisher mass as an FFN probe
    neuron_imp = [rnd.random(64) + 1] * 3  # identical Fisher numbers in every FFN group
    scores = {(i, k): 0.01 for i in range(3) for k in ("attention", "ffn")}
    scores[(2, "ffn")] = 0.05  # ... but the probe of layer 2's FFN measured 5x the loss of the others
    report = _report(G, head_imp, neuron_imp, scores)
    c = calibration(report)
    assert c[(2, "ffn")] == pytest.approx(5 * c[(0, "ffn")])
    plan = build_plan(report, Budget("params", 0.3), floors=Floors(0, 0))
    ffn = plan.trimmed.ffn
    assert ffn[2] > ffn[0] and ffn[2] > ffn[1]
    # the same report ranked the other way keeps less of it
    scores[(2, "ffn")] = 0.002
    flipped = build_plan(_report(G, head_imp, neuron_imp, scores), Budget("params", 0.3), floors=Floors(0, 0))
    assert flipped.trimmed.ffn[2] < ffn[2] and flipped.trimmed.ffn[2] < flipped.trimmed.ffn[0]


def test_calibration_clips_a_noisy_probe():
    rnd = np.random.default_rng(1)
    scores = {(i, k): 0.01 for i in range(3) for k in ("attention", "ffn")}
    scores[(0, "attention")] = -0.2  # a probe that 'improved' the loss: noise, not a free lunch
    scores[(1, "attention")] = 50.0
    report = _report(G, [rnd.random(4) + 1 for _ in range(3)], [rnd.random(64) + 1 for _ in range(3)], scores)
    c = calibration(report)
    positive = sorted(v for v in c.values())
    med = np.median([c[(i, k)] for i in range(3) for k in ("attention", "ffn") if (i, k) not in ((0, "attention"), (1, "attention"))])
    assert min(positive) > 0 and max(positive) / min(positive) <= 64 + 1e-6
    assert c[(1, "attention")] <= 8 * med * 1.5


@pytest.mark.parametrize("allocation", ["calibrated", "rank"])
@pytest.mark.parametrize("fraction", [0.2, 0.3, 0.5, 0.7])
def test_plans_meet_floors_and_budget_within_one_unit(allocation, fraction):
    minilm = Geometry(hidden=384, head_dim=32, heads=(12,) * 6, ffn=(1536,) * 6)
    for seed in range(3):
        rnd = np.random.default_rng(seed)
        r = random.Random(seed)
        scores = {(i, k): r.random() * 0.02 - 0.002 for i in range(6) for k in ("attention", "ffn")}
        report = _report(minilm, [rnd.random(12) ** 4 for _ in range(6)], [rnd.random(1536) ** 4 for _ in range(6)], scores)
        floors = Floors(0.15, 0.1)
        budget = Budget("params", fraction)
        plan = build_plan(report, budget, floors=floors, allocation=allocation)
        assert min(plan.trimmed.heads) >= 2 and min(plan.trimmed.ffn) >= 154
        cost, target = encoder_cost(plan.trimmed, "params", 128), budget.target(minilm)
        assert cost <= target
        addable = [unit_cost(minilm, k, "params", 128) for k, sizes, full in
                   (("attention", plan.trimmed.heads, 12), ("ffn", plan.trimmed.ffn, 1536)) if min(sizes) < full]
        assert not addable or target - cost < min(addable)
        # inside every group the kept units are the most important ones
        for i in range(6):
            imp = np.asarray(report.neuron_importance[i])
            kept = list(plan.keep_neurons[i])
            if 0 < len(kept) < 1536:
                assert imp[kept].min() >= np.delete(imp, kept).max()


def test_floors_above_the_budget_are_refused():
    minilm = Geometry(hidden=384, head_dim=32, heads=(12,) * 6, ffn=(1536,) * 6)
    with pytest.raises(SensiEdgeError, match="floors .* lower --floor-heads"):
        select_units(minilm, [np.ones(12)] * 6, [np.ones(1536)] * 6, Budget("params", 0.2), floors=Floors(0.5, 0.5))
    with pytest.raises(SensiEdgeError, match="--floor-heads must be in"):
        Floors(1.5, 0.1)
    assert Floors.for_task("qa").heads > Floors.for_task("classification").heads
    assert Floors.for_task("classification", heads=0.0).counts(minilm)[(0, "attention")] == 0


def test_distill_loss_is_zero_for_the_teacher_and_ignores_padding():
    from types import SimpleNamespace

    from sensi_edge.finetune import distill_loss

    t = SimpleNamespace(logits=torch.tensor([[2.0, -1.0], [0.0, 1.0]]))
    assert float(distill_loss(t, t)) == pytest.approx(0.0, abs=1e-7)
    s = SimpleNamespace(logits=torch.tensor([[-1.0, 2.0], [0.0, 1.0]]))
    assert float(distill_loss(s, t)) > 0.1
    start = torch.tensor([[1.0, 3.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0, 0]])
    qa_t = SimpleNamespace(logits=None, start_logits=start, end_logits=start)
    qa_s = SimpleNamespace(logits=None, start_logits=start + torch.tensor([[0.0, 0.0, 9.0, -9.0]]),
                           end_logits=start + torch.tensor([[0.0, 0.0, -5.0, 5.0]]))
    assert float(distill_loss(qa_s, qa_t, mask)) == pytest.approx(0.0, abs=1e-6)  # differences only at pads
    assert float(distill_loss(qa_s, qa_t, None)) > 0.1


def test_distillation_trainer_adds_the_teacher_term(tmp_path):
    """The trimmed fine-tune's loss is 0.5 task loss + 0.5 KL to the teacher: a teacher equal to the student
    adds nothing, a different teacher adds a positive term (so a teacher that is ignored fails here)."""
    import copy

    from transformers import TrainingArguments

    from sensi_edge.finetune import DISTILL_ALPHA, _DistillTrainer

    model, batches = model_and_batches(seed=4)
    inputs = label_with_own_predictions(model, batches)[0]
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    with torch.no_grad():
        task_loss = float(model(**inputs).loss)
        same = float(_DistillTrainer(model=model, args=args, teacher=copy.deepcopy(model)).compute_loss(model, inputs))
        other_teacher = copy.deepcopy(model)
        other_teacher.classifier.weight.mul_(-1)  # predicts the opposite class
        other = float(_DistillTrainer(model=model, args=args, teacher=other_teacher).compute_loss(model, inputs))
    assert same == pytest.approx(DISTILL_ALPHA * task_loss, rel=1e-5)
    assert other > same + 0.01


def test_hidden_state_distillation_is_relative_per_layer_and_ignores_padding(tmp_path):
    """The hidden term is 0 for a student equal to the teacher, does not change when only padded positions differ
    or when the embedding output differs, and weighs a layer by its relative error (scaling a layer's activations
    and its error together changes nothing); the trainer adds it with its weight."""
    import copy

    from transformers import TrainingArguments

    from sensi_edge.finetune import _DistillTrainer, hidden_distill_loss

    g = torch.Generator().manual_seed(0)
    t = [torch.randn(2, 5, 4, generator=g) for _ in range(3)]
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert float(hidden_distill_loss(t, t, mask)) == pytest.approx(0.0, abs=1e-7)
    s = [x.clone() for x in t]
    s[0] += 5.0  # embedding output: not trimmed, not matched
    s[1][0, 3:] += 7.0  # padding only
    assert float(hidden_distill_loss(s, t, mask)) == pytest.approx(0.0, abs=1e-7)
    s = [x.clone() for x in t]
    s[2] = t[2] * 1.1  # 1% relative squared error in the last layer, none in the first
    assert float(hidden_distill_loss(s, t, mask)) == pytest.approx(0.01 / 2, rel=1e-4)
    big_t, big_s = [x * 100 for x in t], [x * 100 for x in s]
    assert float(hidden_distill_loss(big_s, big_t, mask)) == pytest.approx(0.01 / 2, rel=1e-4)

    model, batches = model_and_batches(seed=4)
    inputs = label_with_own_predictions(model, batches)[0]
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    teacher = copy.deepcopy(model)
    with torch.no_grad():
        for p in teacher.bert.encoder.layer[0].output.dense.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        plain = float(_DistillTrainer(model=model, args=args, teacher=teacher).compute_loss(model, inputs))
        weighted = float(_DistillTrainer(model=model, args=args, teacher=teacher, hidden_weight=2.0)
                         .compute_loss(model, inputs))
        s_h = model(**{k: v for k, v in inputs.items() if k != "labels"}, output_hidden_states=True).hidden_states
        t_h = teacher(**{k: v for k, v in inputs.items() if k != "labels"}, output_hidden_states=True).hidden_states
    expected = 2.0 * float(hidden_distill_loss(s_h, t_h, inputs["attention_mask"]))
    assert expected > 1e-4
    assert weighted - plain == pytest.approx(expected, rel=1e-4)


def test_a_probe_inside_its_noise_leaves_its_group_at_the_common_calibration():
    """Shrinkage: a loss change within its standard error says nothing about the group (it gets the median
    calibration); the same change measured precisely moves the group as before (and as analyses saved
    before the standard error existed)."""
    from sensi_edge.planner import fisher_predicted

    rnd = np.random.default_rng(2)
    head_imp, neuron_imp = [rnd.random(4) + 1 for _ in range(3)], [0.1 * rnd.random(64) + 0.1 for _ in range(3)]
    scores = {(i, k): 0.01 * (1 + i) for i in range(3) for k in ("attention", "ffn")}
    scores[(2, "ffn")], scores[(1, "ffn")] = 0.2, -0.05  # one probe hurt a lot, one 'helped'
    precise = {g: 1e-6 for g in scores}
    noisy_se = {**precise, (2, "ffn"): 1.0, (1, "ffn"): 1.0}
    sharp = calibration(_report(G, head_imp, neuron_imp, scores, se=precise))
    noisy = calibration(_report(G, head_imp, neuron_imp, scores, se=noisy_se))
    assert calibration(_report(G, head_imp, neuron_imp, scores)) == pytest.approx(sharp)
    predicted = fisher_predicted(_report(G, head_imp, neuron_imp, scores))
    med = float(np.median([scores[g] / predicted[g] for g in scores if scores[g] > 0]))
    for g in ((2, "ffn"), (1, "ffn")):
        assert abs(sharp[g] - med) > 0.5 * med  # measured precisely, the probe moves its group
        assert abs(noisy[g] - med) <= 0.05 * abs(sharp[g] - med)  # inside its noise it does not
    budget = Budget("params", 0.2)
    ffn_sharp = build_plan(_report(G, head_imp, neuron_imp, scores, se=precise), budget, floors=Floors(0, 0)).trimmed.ffn
    ffn_noisy = build_plan(_report(G, head_imp, neuron_imp, scores, se=noisy_se), budget, floors=Floors(0, 0)).trimmed.ffn
    assert ffn_noisy[2] < ffn_sharp[2] and ffn_noisy[1] > ffn_sharp[1]


def test_probe_standard_error_is_that_of_the_per_batch_loss_changes():
    """score_se = std of (probe loss - dense loss) over calibration batches / sqrt(batches), batch by batch."""
    from sensi_edge.arch import adapter_for
    from sensi_edge.masking import MaskSet
    from sensi_edge.planner import top_units

    model, batches = model_and_batches(seed=3, layers=2)
    batches = label_with_own_predictions(model, _padded(batches))
    rep = analyse(model, batches, probe_density=0.5)
    imp = {"attention": rep.head_importance, "ffn": rep.neuron_importance}
    geometry = adapter_for(model).geometry(model)
    for g in rep.groups:
        units = imp[g.kind][g.layer]
        heads = [list(range(h)) for h in geometry.heads]
        neurons = [list(range(f)) for f in geometry.ffn]
        (heads if g.kind == "attention" else neurons)[g.layer] = top_units(units, int(np.ceil(0.5 * len(units))))
        masks = MaskSet.ones(geometry)
        masks.set_keep(heads, neurons)
        diffs = [calibration_loss(model, [b], masks)[0] - calibration_loss(model, [b])[0] for b in batches]
        assert len(diffs) >= 3 and g.score_se > 0
        assert g.score_se == pytest.approx(np.std(diffs, ddof=1) / np.sqrt(len(diffs)), rel=1e-4, abs=1e-9)


def _padded(batches, seed=0):
    """Give every batch rows of different lengths (padding masked out), as real calibration batches have."""
    g = torch.Generator().manual_seed(seed)
    for b in batches:
        lengths = torch.randint(3, b["input_ids"].shape[1] + 1, (b["input_ids"].shape[0],), generator=g)
        b["attention_mask"] = (torch.arange(b["input_ids"].shape[1])[None, :] < lengths[:, None]).long()
    return batches


def _probes_of(geometry, seed=0):
    """One random probe per group: its layer and kind trimmed to half, everything else dense."""
    rnd = random.Random(seed)
    probes, starts = [], []
    for layer in range(geometry.num_layers):
        for kind, sizes in (("attention", geometry.heads), ("ffn", geometry.ffn)):
            if sizes[layer] == 0:
                continue
            heads = [list(range(h)) for h in geometry.heads]
            neurons = [list(range(f)) for f in geometry.ffn]
            (heads if kind == "attention" else neurons)[layer] = sorted(rnd.sample(range(sizes[layer]), max(1, sizes[layer] // 2)))
            probes.append((heads, neurons))
            starts.append(layer)
    return probes, starts


def _assert_probes_match_full_passes(model, batches):
    from sensi_edge.arch import adapter_for
    from sensi_edge.masking import MaskSet
    from sensi_edge.sensitivity import probe_losses

    geometry = adapter_for(model).geometry(model)
    probes, starts = _probes_of(geometry)
    dense, measured = probe_losses(model, batches, probes, starts)
    assert dense == pytest.approx(calibration_loss(model, batches), abs=1e-6)
    for (heads, neurons), got in zip(probes, measured):
        masks = MaskSet.ones(geometry)
        masks.set_keep(heads, neurons)
        assert got == pytest.approx(calibration_loss(model, batches, masks), abs=1e-6)
    assert len({round(m[0], 6) for m in measured}) > 1  # the probes really differ from one another


def test_probes_that_skip_unchanged_layers_equal_full_forward_passes():
    """Probes start at their own layer from the dense pass's hidden states; they must score exactly what a
    full masked forward pass scores (padding included), or every sensitivity score is wrong."""
    model, batches = model_and_batches(seed=2, layers=4)
    _assert_probes_match_full_passes(model, label_with_own_predictions(model, _padded(batches)))


def test_skipping_layers_is_exact_for_qa_and_for_trimmed_models(tmp_path):
    from transformers import BertForQuestionAnswering

    from conftest import irregular_model_dir, tiny_config
    from sensi_edge.loading import load_for_task
    from sensi_edge.tasks import get_task

    torch.manual_seed(0)
    qa = BertForQuestionAnswering(tiny_config(layers=3)).eval()
    _, batches = model_and_batches(seed=3)
    for b in _padded(batches):
        b["start_positions"] = torch.randint(0, 12, (16,))
        b["end_positions"] = torch.randint(0, 12, (16,))
    _assert_probes_match_full_passes(qa, batches)
    # a trimmed model (a layer without heads, one without neurons) runs through the same skip
    trimmed = load_for_task(str(irregular_model_dir(tmp_path)[0]), get_task("sst2"))[1].eval()
    _, batches = model_and_batches(seed=4)
    _assert_probes_match_full_passes(trimmed, label_with_own_predictions(trimmed, _padded(batches)))


def test_the_sweep_page_ranks_groups_by_the_score_the_planner_uses():
    """The rank-stability line of the accuracy page re-calibrates each committed report's JSON; it must give
    the planner's c_g x Fisher-predicted score exactly (a drift would report the stability of another score)."""
    from benchmarks.accuracy_at_budget import _calibrated_group_scores
    from sensi_edge.planner import fisher_predicted
    from sensi_edge.run_report import _sensitivity_section

    rnd = np.random.default_rng(5)
    head_imp, neuron_imp = [rnd.random(4) + 1 for _ in range(3)], [0.1 * rnd.random(64) + 0.1 for _ in range(3)]
    scores = {(i, k): 0.01 * (1 + i) + 0.003 * (k == "ffn") for i in range(3) for k in ("attention", "ffn")}
    scores[(1, "attention")] = -0.02
    se = {g: 0.004 for g in scores}
    report = _report(G, head_imp, neuron_imp, scores, se=se)

    class Cfg:
        effective_warmup_fraction, baseline = None, True

    page = _calibrated_group_scores(json.loads(json.dumps(_sensitivity_section(Cfg, report))))
    c, predicted = calibration(report), fisher_predicted(report)
    assert page == pytest.approx({f"L{i}.{k}": c[(i, k)] * predicted[(i, k)] for (i, k) in c})
    assert len(set(round(v, 12) for v in page.values())) == len(page)  # the scores tell the groups apart
