"""Local split folders, hub ids, presets and the generic task, with the errors users hit."""
import pytest

from sensi_edge.data import load_task_data
from sensi_edge.errors import SensiEdgeError
from sensi_edge.tasks import get_task

from conftest import SHARED_DATA, sentiment_rows, write_jsonl

needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared task data not found at {SHARED_DATA}")


def test_local_folder_and_preset(tiny_sst2_dir):
    train, val, task = load_task_data(str(tiny_sst2_dir), get_task("sst2"))
    assert len(train) == 48 and len(val) == 16 and task.num_labels == 2


def test_mnli_validation_matched_naming(tmp_path):
    rows = [{"premise": "a", "hypothesis": "b", "label": i % 3} for i in range(9)]
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "validation_matched.jsonl", rows)
    write_jsonl(tmp_path / "validation_mismatched.jsonl", rows[:3])
    _, val, task = load_task_data(str(tmp_path), get_task("mnli"))
    assert len(val) == 9 and task.text_columns == ("premise", "hypothesis")


def test_csv_and_parquet_splits(tmp_path):
    import pandas as pd

    df = pd.DataFrame(sentiment_rows(10))
    df.to_csv(tmp_path / "train.csv", index=False)
    df.to_parquet(tmp_path / "validation.parquet")
    train, val, _ = load_task_data(str(tmp_path), get_task("sst2"))
    assert len(train) == len(val) == 10


@needs_shared
@pytest.mark.parametrize("name,labels,column", [("trec", 6, "text"), ("sms-spam", 2, "sentence")])
def test_generic_task_infers_columns_and_labels(name, labels, column):
    _, _, task = load_task_data(str(SHARED_DATA / name), get_task("text-classification"))
    assert task.num_labels == labels and task.text_columns == (column,)


@needs_shared
@pytest.mark.parametrize("name,preset", [("rt-polarity", "sst2"), ("snli", "mnli"), ("qnli-squad", "qnli"),
                                         ("squad-v1.1-dev", "squad")])
def test_shared_stand_ins_fit_their_presets(name, preset):
    train, val, task = load_task_data(str(SHARED_DATA / name), get_task(preset))
    assert len(train) > 1000 and len(val) > 100


def test_missing_split(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", sentiment_rows(4))
    with pytest.raises(SensiEdgeError, match="no 'validation' split"):
        load_task_data(str(tmp_path), get_task("sst2"))


def test_missing_column(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text": "x", "label": 0}])
    write_jsonl(tmp_path / "validation.jsonl", [{"text": "x", "label": 0}])
    with pytest.raises(SensiEdgeError, match="no column 'sentence'"):
        load_task_data(str(tmp_path), get_task("sst2"))


def test_label_outside_task(tmp_path):
    rows = sentiment_rows(6)
    rows[3]["label"] = 2
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "validation.jsonl", sentiment_rows(4))
    with pytest.raises(SensiEdgeError, match="label 2 outside"):
        load_task_data(str(tmp_path), get_task("sst2"))


def test_unknown_task_and_unreachable_hub():
    with pytest.raises(SensiEdgeError, match="unknown task"):
        get_task("summarise")
    with pytest.raises(SensiEdgeError, match="cannot load dataset"):
        load_task_data("nobody-xyz/no-such-dataset", get_task("sst2"))
    with pytest.raises(SensiEdgeError, match="does not exist|not a folder"):
        load_task_data("./no/such/folder", get_task("sst2"))


def _spam_rows(n, seed=0, names=("spam", "ham")):
    return [{"sentence": f"message {seed}-{i}", "label": names[i % len(names)]} for i in range(n)]


def test_text_labels_become_ids_and_label_names(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", _spam_rows(8))
    write_jsonl(tmp_path / "validation.jsonl", _spam_rows(4, seed=1))
    train, val, task = load_task_data(str(tmp_path), get_task("text-classification"))
    assert task.label_names == ("ham", "spam") and task.num_labels == 2  # sorted: the same data, the same ids
    assert train["label"][:2] == [1, 0] and val["label"][:2] == [1, 0]


def test_text_labels_follow_the_presets_order(tmp_path):
    rows = [{"sentence": f"s{i}", "label": ("positive", "negative")[i % 2]} for i in range(6)]
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "validation.jsonl", rows)
    train, _, task = load_task_data(str(tmp_path), get_task("sst2"))
    assert task.label_names == ("negative", "positive") and train["label"][:2] == [1, 0]


@pytest.mark.parametrize("val_names,message", [(("spam", "eggs"), "label 'eggs', not one of 'ham', 'spam'"),
                                               ((1, 0), "mix text and numbers")])
def test_text_labels_the_model_cannot_know_are_errors(tmp_path, val_names, message):
    write_jsonl(tmp_path / "train.jsonl", _spam_rows(8))
    write_jsonl(tmp_path / "validation.jsonl", [{"sentence": f"v{i}", "label": n} for i, n in enumerate(val_names)])
    with pytest.raises(SensiEdgeError, match=message):
        load_task_data(str(tmp_path), get_task("text-classification"))
