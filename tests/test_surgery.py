"""Physical removal: masked vs pruned parity on random irregular plans, save/load round trips."""
import json
import subprocess
import sys

import pytest
import torch
from transformers import BertForQuestionAnswering, BertForSequenceClassification

from sensi_edge.arch import adapter_for
from sensi_edge.artifacts import TrimPlan
from sensi_edge.run_report import count_saved_params
from sensi_edge.cost import encoder_params
from sensi_edge.masking import MaskSet, attach
from sensi_edge.surgery import apply_plan, parity

from conftest import random_plan, tiny_config




def batch(vocab, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (3, 11), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


@pytest.mark.parametrize("cls", [BertForSequenceClassification, BertForQuestionAnswering])
@pytest.mark.parametrize("seed", range(4))
def test_masked_equals_pruned_on_random_irregular_plans(cls, seed):
    torch.manual_seed(seed)
    cfg = tiny_config(num_labels=3 if cls is BertForSequenceClassification else 2, layers=4, heads=4, hidden=32, ffn=40)
    model = cls(cfg).eval()
    g = adapter_for(model).geometry(model)
    plan = random_plan(g, seed)
    trimmed = apply_plan(model, plan)
    assert adapter_for(trimmed).geometry(trimmed) == plan.trimmed
    assert plan.trimmed.heads[0] == 0 and plan.trimmed.ffn[1] == 0
    b = batch(cfg.vocab_size, seed)
    assert parity(model, trimmed, plan, b) < 1e-4
    # the check can fail: the unmasked model differs from the pruned one
    with torch.no_grad():
        unmasked = model(**b)
        pruned = trimmed(**b)
    key = "logits" if hasattr(unmasked, "logits") else "start_logits"
    assert (getattr(unmasked, key) - getattr(pruned, key)).abs().max() > 1e-3


def test_every_layer_emptied_still_runs():
    cfg = tiny_config(layers=2)
    model = BertForSequenceClassification(cfg).eval()
    g = adapter_for(model).geometry(model)
    plan = TrimPlan(g, ((), ()), ((), ()), {"kind": "params"})
    trimmed = apply_plan(model, plan)
    assert parity(model, trimmed, plan, batch(cfg.vocab_size)) < 1e-4
    assert sum(p.numel() for p in trimmed.bert.encoder.parameters()) == encoder_params(plan.trimmed)


def test_masks_can_be_attached_and_removed():
    cfg = tiny_config()
    model = BertForSequenceClassification(cfg).eval()
    g = adapter_for(model).geometry(model)
    b = batch(cfg.vocab_size)
    with torch.no_grad():
        ref = model(**b).logits
        with attach(model, MaskSet.from_plan(random_plan(g, 3))):
            masked = model(**b).logits
        after = model(**b).logits
    assert (ref - masked).abs().max() > 1e-3
    assert torch.equal(ref, after)


def _save_trimmed(tmp_path, seed=1, plan=None):
    from transformers import AutoTokenizer

    from sensi_edge.loading import default_model_path

    torch.manual_seed(seed)
    cfg = tiny_config(num_labels=3, layers=3)
    model = BertForSequenceClassification(cfg).eval()
    plan = plan or random_plan(adapter_for(model).geometry(model), seed)
    trimmed = apply_plan(model, plan)
    out = tmp_path / "trimmed"
    trimmed.save_pretrained(out)
    AutoTokenizer.from_pretrained(default_model_path()).save_pretrained(out)
    b = batch(cfg.vocab_size)
    torch.save(b, tmp_path / "batch.pt")
    with torch.no_grad():
        torch.save(trimmed(**b).logits, tmp_path / "ref.pt")
    return out, plan


def test_reload_with_stock_transformers_in_fresh_process_without_sensi_edge(tmp_path):
    out, plan = _save_trimmed(tmp_path)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "bert" and "AutoModelForSequenceClassification" in cfg["auto_map"]
    assert cfg["layer_num_heads"] == list(plan.trimmed.heads)
    code = f"""
import sys, torch
sys.modules['sensi_edge'] = None  # prove the checkpoint needs nothing from our package
from transformers import AutoModelForSequenceClassification
m = AutoModelForSequenceClassification.from_pretrained({str(out)!r}, trust_remote_code=True).eval()
b = torch.load({str(tmp_path / 'batch.pt')!r})
with torch.no_grad():
    d = (m(**b).logits - torch.load({str(tmp_path / 'ref.pt')!r})).abs().max().item()
print(d)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    assert float(res.stdout.strip().splitlines()[-1]) < 1e-5


def _bare_load_in_fresh_process(out, tmp_path):
    """A model class on the folder without trust_remote_code, in a process without sensi_edge; prints
    'refused: <error>' or 'loaded', with transformers' warnings on stderr."""
    code = f"""
import sys
sys.modules['sensi_edge'] = None
from transformers import AutoModelForSequenceClassification
from transformers.utils import logging
logging.set_verbosity_warning()
try:
    AutoModelForSequenceClassification.from_pretrained({str(out)!r})
except Exception as exc:
    print("refused:", type(exc).__name__)
else:
    print("loaded")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    return res


def test_without_trust_remote_code_stock_transformers_refuses_rather_than_loads_a_wrong_bert(tmp_path):
    """model_type is bert (so bare AutoConfig / AutoTokenizer ask nothing): a model class loaded without the
    custom code must fail on the trimmed shapes, never hand back a stock BERT with re-initialised weights."""
    out, _ = _save_trimmed(tmp_path, seed=3)
    res = _bare_load_in_fresh_process(out, tmp_path)
    assert res.stdout.strip().splitlines()[-1].startswith("refused:"), res.stdout + res.stderr[-2000:]


def test_an_all_or_nothing_plan_loaded_without_the_custom_code_is_never_silent(tmp_path):
    """When every layer keeps all or none of its units (``--method truncate``) the kept tensors have stock
    BERT's shapes, so a model class without trust_remote_code cannot fail on a shape: transformers then loads a
    stock BERT whose emptied layers are re-initialised. It must at least say so (the README states this gap)."""
    from sensi_edge.artifacts import TrimPlan

    dense = BertForSequenceClassification(tiny_config(num_labels=3, layers=3))
    g = adapter_for(dense).geometry(dense)
    full_h, full_f = tuple(range(g.heads[0])), tuple(range(g.ffn[0]))
    plan = TrimPlan(g, (full_h, full_h, ()), (full_f, full_f, ()), {"kind": "params", "value": 0.6})
    out, _ = _save_trimmed(tmp_path, plan=plan)
    res = _bare_load_in_fresh_process(out, tmp_path)
    said = res.stdout + res.stderr
    assert "refused:" in said or "newly initialized" in said or "MISSING" in said, said[-2000:]


def test_reload_through_own_loader_without_trust_remote_code(tmp_path):
    from sensi_edge.loading import load_classifier

    out, plan = _save_trimmed(tmp_path, seed=2)
    _, model = load_classifier(str(out), 3)
    assert adapter_for(model).geometry(model) == plan.trimmed
    with torch.no_grad():
        d = (model.eval()(**torch.load(tmp_path / "batch.pt")).logits - torch.load(tmp_path / "ref.pt")).abs().max()
    assert d < 1e-5
    counts = count_saved_params(out)
    assert counts["encoder"] == encoder_params(plan.trimmed)
    # the README's in-process form: an Auto class handed sensi-edge's config, no trust_remote_code
    from transformers import AutoModelForSequenceClassification

    from sensi_edge.loading import load_config

    again = AutoModelForSequenceClassification.from_pretrained(str(out), config=load_config(str(out))).eval()
    assert adapter_for(again).geometry(again) == plan.trimmed


def test_a_folder_saved_as_sensi_bert_still_loads(tmp_path, capfd):
    """Models saved before the config said ``bert`` carry model_type ``sensi_bert``: sensi-edge reads them as
    the trimmed config with the same outputs, and its tokenizer / config calls neither warn about the model type
    nor ask transformers 5's remote-code question (input() writes it to stdout before failing on pytest's stdin).
    (The folder keeps today's code files; only what sensi-edge itself reads is under test.)"""
    from transformers import AutoConfig

    from sensi_edge.loading import load_classifier, load_config
    from sensi_edge.tasks.scoring import find_tokenizer

    out, plan = _save_trimmed(tmp_path, seed=4)
    cfg = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**cfg, "model_type": "sensi_bert"}))
    capfd.readouterr()
    config = load_config(str(out))
    assert config.layer_num_heads == list(plan.trimmed.heads) and config.model_type == "bert"
    _, model = load_classifier(str(out), 3)
    with torch.no_grad():
        d = (model.eval()(**torch.load(tmp_path / "batch.pt")).logits - torch.load(tmp_path / "ref.pt")).abs().max()
    assert d < 1e-5
    find_tokenizer(out)
    assert AutoConfig.from_pretrained(str(out)).layer_num_heads == list(plan.trimmed.heads)
    said = capfd.readouterr()
    noise = [x for x in (said.out + said.err).splitlines() if "model of type" in x or "[y/N]" in x or "custom code" in x]
    assert not noise, noise
