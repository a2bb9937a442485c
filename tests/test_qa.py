"""SQuAD pieces on hand-made cases: the official metric, windows over long contexts, edge answers."""
import numpy as np
import pytest
from transformers import AutoTokenizer

from sensi_edge.loading import default_model_path
from conftest import squad_rows
from sensi_edge.tasks.qa import best_spans, eval_features, exact_match, f1, normalize_answer, squad_metrics, train_features


def test_normalisation_articles_punctuation_whitespace():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("Theatre") == "theatre"  # 'the' only as a word


def test_exact_match_and_f1_hand_computed():
    assert exact_match("the Eiffel tower", "Eiffel Tower.") == 1.0
    assert f1("in Paris France", "Paris") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))  # p=1/3, r=1 -> 0.5
    assert f1("cat", "dog") == 0.0 and f1("", "dog") == 0.0
    # several gold answers: the best one counts
    m = squad_metrics({"q1": "Denver Broncos", "q2": "1990"}, {"q1": ["Broncos", "Denver Broncos"], "q2": ["1989", "in 1989"]})
    assert m["exact_match"] == 50.0 and m["f1"] == 50.0


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(default_model_path())


def _example(context, answer, question="Where is it?", id_="x"):
    start = context.index(answer)
    return {"id": [id_], "question": [question], "context": [context],
            "answers": [{"text": [answer], "answer_start": [start]}]}


def test_long_context_is_windowed_and_answer_labelled_in_the_right_window(tok):
    filler = " ".join(f"word{i}" for i in range(120))
    ex = _example(f"{filler} The treasure is buried in Lisbon harbour. {filler}", "Lisbon harbour")
    feats = train_features(ex, tok, max_seq_length=64, doc_stride=16)
    assert len(feats["input_ids"]) > 3  # several windows
    labelled = [(s, e) for s, e in zip(feats["start_positions"], feats["end_positions"]) if s != 0]
    assert labelled, "at least one window must contain the answer"
    for i, (s, e) in enumerate(zip(feats["start_positions"], feats["end_positions"])):
        if s != 0:
            assert tok.decode(feats["input_ids"][i][s: e + 1]) == "lisbon harbour"


@pytest.mark.parametrize("where", ["start", "end"])
def test_answers_at_the_edges_of_the_context(tok, where):
    ctx = "Lisbon is where it is. " + "more words here " * 3 + "It ends in Porto"
    answer = "Lisbon" if where == "start" else "Porto"
    ex = _example(ctx, answer)
    feats = train_features(ex, tok, max_seq_length=64, doc_stride=16)
    s, e = feats["start_positions"][0], feats["end_positions"][0]
    assert tok.decode(feats["input_ids"][0][s: e + 1]) == answer.lower()


def test_postprocessing_searches_all_windows_and_maps_back_to_text(tok):
    filler = " ".join(f"word{i}" for i in range(100))
    ex = _example(f"{filler} The capital is Lisbon. {filler}", "Lisbon")
    feats = eval_features(ex, tok, max_seq_length=64, doc_stride=16)
    train = train_features(ex, tok, max_seq_length=64, doc_stride=16)
    n = len(feats["input_ids"])
    start, end = np.zeros((n, 64)), np.zeros((n, 64))
    win = next(i for i, s in enumerate(train["start_positions"]) if s != 0)
    start[win, train["start_positions"][win]] = 5.0
    end[win, train["end_positions"][win]] = 5.0
    start[:, 0] = end[:, 0] = 9.0  # [CLS] scores high but is not in the context: never chosen
    rows = [{"id": "x", "context": ex["context"][0]}]
    pred = best_spans(rows, feats, start, end, n_best=5, max_answer_length=10)
    assert pred == {"x": "Lisbon"}
    # the answer-length cap applies
    end[win, :] = 0
    end[win, min(train["start_positions"][win] + 20, 63)] = 5.0
    pred = best_spans(rows, feats, start, end, n_best=5, max_answer_length=3)
    assert pred["x"] != "Lisbon"




def test_squad_through_compress_export_and_evaluate(tmp_path, tiny_model_dir):
    import json

    from typer.testing import CliRunner

    from cli.main import app
    from conftest import write_jsonl

    data = tmp_path / "squad"
    write_jsonl(data / "train.jsonl", squad_rows(40))
    write_jsonl(data / "validation.jsonl", squad_rows(12, seed=1))
    run = CliRunner().invoke(app, ["compress", "--model", str(tiny_model_dir), "--task", "squad", "--data", str(data),
                                   "--output", str(tmp_path / "run"), "--max-seq-length", "64", "--doc-stride", "16",
                                   "--epochs", "1", "--batch-size", "8", "--calibration-samples", "8"])
    assert run.exit_code == 0, run.stderr[-2000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["metric"] == "f1" and set(report["compressed"]) == {"exact_match", "f1"}
    assert report["params"]["encoder_after_saved"] <= 0.5 * report["params"]["encoder_before"]
    assert report["masked_vs_pruned_max_abs_diff"] < 1e-4 and report["flops"]["seq_len"] == 64
    cfg = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert cfg["architectures"] == ["SensiBertForQuestionAnswering"] and "AutoModelForQuestionAnswering" in cfg["auto_map"]
    exp = CliRunner().invoke(app, ["export", str(tmp_path / "run" / "model"), "--onnx", "--output", str(tmp_path / "onnx"),
                                   "--max-seq-length", "64", "--doc-stride", "16", "--max-metric-drop", "100"])
    assert exp.exit_code == 0, exp.stderr[-2000:]
    r = json.loads((tmp_path / "onnx" / "export_report.json").read_text())
    assert r["task"]["kind"] == "qa" and r["graph_steps"]["fuse"]["max_abs_diff"] < 1e-4
    scores = []
    for target in (tmp_path / "run" / "model", tmp_path / "onnx" / "model.onnx"):
        ev = CliRunner().invoke(app, ["evaluate", str(target), "--task", "squad", "--data", str(data), "--json",
                                      "--max-seq-length", "64"])
        assert ev.exit_code == 0, ev.stderr
        scores.append(json.loads(ev.stdout)["metrics"])
    assert scores[0] == scores[1]
    # a bare encoder checkpoint (no head) is exported as a QA model because the task says so
    bare = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--onnx", "--output", str(tmp_path / "bare"),
                                    "--task", "squad", "--data", str(data), "--max-seq-length", "64",
                                    "--quantize", "none", "--max-metric-drop", "100"])
    assert bare.exit_code == 0, bare.stderr[-2000:]
    import onnx

    outputs = [o.name for o in onnx.load(str(tmp_path / "bare" / "model.onnx")).graph.output]
    assert outputs == ["start_logits", "end_logits"]


def test_squad_data_errors(tmp_path):
    from conftest import write_jsonl
    from sensi_edge.data import load_task_data
    from sensi_edge.errors import SensiEdgeError
    from sensi_edge.tasks import get_task

    rows = squad_rows(4)
    rows[1]["answers"]["answer_start"] = [0]
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "validation.jsonl", squad_rows(2, 1))
    with pytest.raises(SensiEdgeError, match="is not at character 0"):
        load_task_data(str(tmp_path), get_task("squad"))



@pytest.fixture(scope="module")
def squad_anchor(tmp_path_factory, tiny_model_dir):
    """One kept sensitivity run on tiny SQuAD data, as the sweep's anchor is."""
    from conftest import write_jsonl

    from sensi_edge.compress import CompressConfig, compress
    from sensi_edge.finetune import Recipe

    root = tmp_path_factory.mktemp("squad_anchor")
    write_jsonl(root / "squad" / "train.jsonl", squad_rows(24))
    write_jsonl(root / "squad" / "validation.jsonl", squad_rows(8, seed=1))
    common = dict(task="squad", data=str(root / "squad"), model=str(tiny_model_dir), max_seq_length=64, doc_stride=16,
                  calibration_samples=8, recipe=Recipe(epochs=1, batch_size=8))
    return common, compress(CompressConfig(output=root / "anchor", keep_intermediate=True, **common), log=lambda m: None)


@pytest.mark.parametrize("method", ["fisher-mask", "truncate", "magnitude"])
def test_comparison_methods_on_squad_reuse_a_kept_anchor(tmp_path, squad_anchor, method):
    """The sweep runs every method on SQuAD off one kept sensitivity run: the QA head and loss must
    flow through the Fisher mask, truncation and magnitude paths too."""
    from sensi_edge.compress import CompressConfig, compress

    common, anchor = squad_anchor
    run = compress(CompressConfig(output=tmp_path / method, method=method, budget=0.3, reuse=anchor.output, **common),
                   log=lambda m: None)
    r = run.report
    assert r["method"] == method and r["metric"] == "f1" and set(r["compressed"]) == {"exact_match", "f1"}
    assert r["params"]["encoder_after_saved"] <= 0.3 * r["params"]["encoder_before"]
    assert r["dense_baseline"] == anchor.report["dense_baseline"] and "baseline" in r["reused_wall_seconds"]
