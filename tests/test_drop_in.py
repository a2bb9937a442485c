"""The outputs drop into the Hugging Face / ONNX Runtime stack: label names, optimum ORTModel, pipelines."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import sentiment_rows, write_jsonl


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_model_dir):
    """A tiny sst2 model through compress and export (fp32 + dynamic int8)."""
    from sensi_edge.compress import CompressConfig, compress
    from sensi_edge.export import ExportConfig, export
    from sensi_edge.finetune import Recipe

    root = tmp_path_factory.mktemp("dropin")
    d = root / "sst2"
    write_jsonl(d / "train.jsonl", sentiment_rows(64))
    write_jsonl(d / "validation.jsonl", sentiment_rows(16, seed=1))
    run = compress(CompressConfig(task="sst2", data=str(d), output=root / "run", model=str(tiny_model_dir),
                                  max_seq_length=32, recipe=Recipe(epochs=1, batch_size=8), calibration_samples=8),
                   log=lambda m: None).output
    onnx = export(ExportConfig(run / "model", root / "onnx", quantize=("dynamic",), max_metric_drop=100.0,
                               max_seq_length=32), log=lambda m: None).output
    return run, onnx


SENTENCES = ["the film was great fun", "the film was dull and boring"]


def test_saved_model_has_a_model_card(exported):
    run, _ = exported
    card = (run / "model" / "README.md").read_text()
    report = __import__("json").loads((run / "report.json").read_text())
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: text-classification\n")
    assert f"{report['compressed']['accuracy']:.2f}" in card and f"{report['params']['encoder_after_saved']:,}" in card
    assert "0 negative, 1 positive" in card and "trust_remote_code=True" in card


def test_saved_model_names_its_labels_in_a_pipeline(exported):
    from transformers import AutoConfig, pipeline

    run, _ = exported
    config = AutoConfig.from_pretrained(run / "model", trust_remote_code=True)
    assert config.id2label == {0: "negative", 1: "positive"} and config.label2id == {"negative": 0, "positive": 1}
    clf = pipeline("text-classification", model=str(run / "model"), trust_remote_code=True)
    assert {r["label"] for r in clf(SENTENCES)} <= {"negative", "positive"}


NO_OPTIMUM = "optimum-onnx 0.1.0 needs transformers < 4.58: install sensi-edge[optimum] (the transformers 4.57 line)"


def _pytorch_logits(model_dir, batch):
    import torch
    from transformers import AutoModelForSequenceClassification

    ref = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=True).eval()
    with torch.no_grad():
        return ref(**batch).logits.numpy(), ref.config.id2label


def _close(got, want, file_name):
    if file_name == "model.onnx":
        return np.abs(got - want).max() < 1e-4
    # int8: same decisions, values within a fraction of the logit scale
    return (got.argmax(-1) == want.argmax(-1)).all() and np.abs(got - want).max() <= 0.15 * np.abs(want).max() + 1e-3


@pytest.mark.parametrize("file_name", ["model.onnx", "model_int8_dynamic.onnx"])
def test_export_folder_runs_in_plain_onnxruntime_and_agrees_with_pytorch(exported, file_name):
    """The README's plain-onnxruntime snippet: the tokenizer's output fed to the session as it is."""
    import onnxruntime as rt
    from transformers import AutoTokenizer

    run, onnx = exported
    tok = AutoTokenizer.from_pretrained(onnx)
    sess = rt.InferenceSession(str(onnx / file_name), providers=["CPUExecutionProvider"],
                               disabled_optimizers=["SkipLayerNormFusion"])  # the README snippet
    got = sess.run(None, dict(tok(SENTENCES, padding=True, return_tensors="np")))[0]
    want, _ = _pytorch_logits(run / "model", tok(SENTENCES, padding=True, return_tensors="pt"))
    assert _close(got, want, file_name)


@pytest.mark.parametrize("file_name", ["model.onnx", "model_int8_dynamic.onnx"])
def test_export_folder_loads_in_optimum_and_agrees_with_pytorch(exported, file_name):
    ort = pytest.importorskip("optimum.onnxruntime", reason=NO_OPTIMUM)
    from transformers import AutoTokenizer, pipeline

    run, onnx = exported
    tok = AutoTokenizer.from_pretrained(onnx)
    ort_model = ort.ORTModelForSequenceClassification.from_pretrained(onnx, file_name=file_name)
    assert ort_model.config.id2label == {0: "negative", 1: "positive"}
    labels = [r["label"] for r in pipeline("text-classification", model=ort_model, tokenizer=tok)(SENTENCES)]
    assert set(labels) <= {"negative", "positive"}
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    want, id2label = _pytorch_logits(run / "model", batch)
    got = ort_model(**batch).logits
    got = got.numpy() if hasattr(got, "numpy") else np.asarray(got)
    assert _close(got, want, file_name)
    assert labels == [id2label[int(i)] for i in want.argmax(-1)]


def _fresh_python(code: str):
    """``code`` in a new interpreter with stdin closed and transformers' warnings shown; must exit 0."""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                         env={**__import__("os").environ, "TRANSFORMERS_VERBOSITY": "warning"})
    assert res.returncode == 0, res.stderr[-2000:]
    return res


def test_loading_our_model_as_documented_asks_nothing_and_warns_nothing(exported):
    """transformers 5 asks '[y/N]' on stdin for custom code it is not told to trust, and warns about the model
    type when the config falls back: the README's calls must do neither."""
    run, _ = exported
    code = (f"from transformers import AutoTokenizer, AutoModelForSequenceClassification, pipeline\n"
            f"d = {str(run / 'model')!r}\n"
            "tok = AutoTokenizer.from_pretrained(d)\n"
            "model = AutoModelForSequenceClassification.from_pretrained(d, trust_remote_code=True)\n"
            "print(pipeline('text-classification', model=d, trust_remote_code=True)('a fine film')[0]['label'])\n")
    res = _fresh_python(code)
    assert res.stdout.strip() in ("negative", "positive")
    noise = [line for line in res.stderr.splitlines() if "[y/N]" in line or "model of type" in line
             or "custom code" in line or "newly initialized" in line]
    assert not noise, noise


def test_bare_auto_config_and_tokenizer_ask_nothing(exported):
    """What users type without thinking: AutoTokenizer / AutoConfig on the model folder, no trust_remote_code.
    transformers 5's AutoTokenizer loads the config first, and a config type it does not know made it ask
    '[y/N]' on stdin (input() writes the question to stdout; with stdin closed it then gave up silently)."""
    run, _ = exported
    code = (f"from transformers import AutoConfig, AutoTokenizer\n"
            f"d = {str(run / 'model')!r}\n"
            "tok = AutoTokenizer.from_pretrained(d)\n"
            "cfg = AutoConfig.from_pretrained(d)\n"
            "print(type(tok).__name__, cfg.model_type, cfg.layer_num_heads, cfg.id2label[1], sep='|')\n")
    res = _fresh_python(code)
    assert "[y/N]" not in res.stdout + res.stderr and "custom code" not in res.stdout + res.stderr
    name, model_type, heads, label = res.stdout.strip().split("|")
    assert name.startswith("BertTokenizer") and model_type == "bert" and label == "positive"
    report = __import__("json").loads((run / "report.json").read_text())
    assert heads == str(report["plan"]["heads_per_layer"])


def test_bundle_names_the_labels_in_logit_order(exported, tmp_path):
    import json

    from sensi_edge.bundle import bundle

    _, onnx = exported
    out = bundle(onnx / "model_int8_dynamic.onnx", tmp_path / "bundle", seq_len=32)
    assert json.loads((out / "manifest.json").read_text())["labels"] == ["negative", "positive"]


def test_python_dash_m_is_the_console_script():
    res = subprocess.run([sys.executable, "-m", "sensi_edge", "compress", "--seed", "abc"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.strip().startswith("error: ") and "--seed" in res.stderr
    ok = subprocess.run([sys.executable, "-m", "sensi_edge", "--help"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "compress" in ok.stdout


def test_qa_export_folder_loads_in_optimum_pipeline_and_agrees_with_pytorch(tmp_path, tiny_model_dir):
    import onnxruntime as rt
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

    from sensi_edge.export import ExportConfig, export
    from conftest import squad_rows

    d = tmp_path / "squad"
    write_jsonl(d / "train.jsonl", squad_rows(16))
    write_jsonl(d / "validation.jsonl", squad_rows(6, seed=1))
    qa_dir = tmp_path / "qa-model"  # one QA head, saved: exported and compared against the same weights
    AutoModelForQuestionAnswering.from_pretrained(tiny_model_dir).save_pretrained(qa_dir)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(qa_dir)
    onnx = export(ExportConfig(qa_dir, tmp_path / "onnx", quantize=("dynamic",), task="squad", data=str(d),
                               max_seq_length=64, doc_stride=16, max_metric_drop=100.0), log=lambda m: None).output
    tok = AutoTokenizer.from_pretrained(onnx)
    question, context = "Who designed the museum?", "The museum opened in 1901 and was designed by Anna Berg."
    ref = AutoModelForQuestionAnswering.from_pretrained(qa_dir).eval()
    with torch.no_grad():
        want = ref(**tok(question, context, return_tensors="pt"))
    for file_name in ("model.onnx", "model_int8_dynamic.onnx"):
        sess = rt.InferenceSession(str(onnx / file_name), providers=["CPUExecutionProvider"])
        start, end = sess.run(["start_logits", "end_logits"], dict(tok(question, context, return_tensors="np")))
        for got, ref_logits in ((start, want.start_logits.numpy()), (end, want.end_logits.numpy())):
            scale = 1e-4 if file_name == "model.onnx" else 0.15 * np.abs(ref_logits).max() + 1e-3
            assert np.abs(got - ref_logits).max() <= scale, file_name
    ort = pytest.importorskip("optimum.onnxruntime", reason=NO_OPTIMUM)
    for file_name in ("model.onnx", "model_int8_dynamic.onnx"):
        qa = pipeline("question-answering", model=ort.ORTModelForQuestionAnswering.from_pretrained(onnx, file_name=file_name),
                      tokenizer=tok)
        answer = qa(question=question, context=context)
        assert answer["answer"] and answer["answer"] in context
