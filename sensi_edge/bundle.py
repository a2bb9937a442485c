"""``bundle``: a folder to copy to a Raspberry Pi / phone / any board and benchmark there.

Contents: model.onnx, tokenizer.json (when the export has one), samples.npz (real sentences
tokenised here, with the outputs this machine's ONNX Runtime produced), manifest.json (with the
classifier's label names in logit order), the two
GEMM ceiling graphs (gemm_fp32.onnx, gemm_int8.onnx, 12 MB: prebuilt so the device needs no onnx), and
run.py -- a copy of ``bundle_runtime.py``, which needs only numpy + onnxruntime. run.py checks
its outputs against the expected ones before timing anything and writes the same JSON report
schema as ``sensi-edge bench``, so ``sensi-edge report`` merges device results directly.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from . import bundle_runtime, checks
from .artifacts import staged_output
from .bench import describe
from .cost import encoder_flops
from .errors import SensiEdgeError
from .tasks import default_seq_len

SAMPLE_TEXTS = (
    ("A gorgeous, witty, seductive movie.", "Is it worth seeing?"),
    ("The plot is a tired retread and the jokes fall flat.", "Was it any good?"),
    ("Where was the treaty signed?", "The treaty was signed in Paris in 1783."),
    ("Two dogs run across a snowy field.", "Animals are outside."),
)


def _max_positions(onnx_file: Path) -> int | None:
    """Rows of the position-embedding table in the graph (None if the graph has no such initializer)."""
    import onnx

    graph = onnx.load(str(onnx_file), load_external_data=False).graph
    return next((int(t.dims[0]) for t in graph.initializer if "position_embeddings" in t.name and t.dims), None)


def _checked(onnx_file, output, seq_len, threads, profile_models, texts_from, task, texts) -> tuple[Path, Path]:
    """Every argument checked before anything is written; the ONNX file and output as absolute paths."""
    if profile_models is not None and not (Path(profile_models) / bundle_runtime.POINTS_FILE).is_file():
        raise SensiEdgeError(f"--profile-models {profile_models} has no {bundle_runtime.POINTS_FILE}; pass the folder "
                             "made by `sensi-edge profile --keep-models`")
    if (texts_from is None) != (task is None):
        raise SensiEdgeError("--texts-from and --task go together (the task names the text columns)")
    checks.at_least("--texts", texts, optional=False)
    checks.seq_len("--seq-len", seq_len)
    if not threads:
        raise SensiEdgeError("--threads needs at least one thread count")
    checks.threads("--threads", threads)
    onnx_file, output = Path(onnx_file).resolve(), Path(output).resolve()
    if not onnx_file.is_file():
        raise SensiEdgeError(f"{onnx_file} does not exist; pass an exported model*.onnx file")
    if onnx_file.suffix != ".onnx":
        raise SensiEdgeError(f"{onnx_file} is not an .onnx file; pass an exported model*.onnx")
    return onnx_file, output


def _samples_and_tolerance(work: Path, feed: dict, precision: str) -> tuple[list[str], dict]:
    """This host's outputs on the sample inputs (samples.npz) and how far the board's may differ."""
    session = bundle_runtime.ort_session(work / "model.onnx", 1)
    outputs = [o.name for o in session.get_outputs()]
    expected = bundle_runtime.ort_callable(session)(feed)
    np.savez(work / "samples.npz", **feed, **{f"expected_{n}": e for n, e in zip(outputs, expected)})
    scale = max(float(np.abs(e).max()) for e in expected)
    # fp32 kernels agree across ISAs to rounding; int8 kernels differ (VNNI vs NEON, u8/s8) by more
    tol = ({"max_abs_diff": 0.1 * scale + 1e-3, "argmax_agreement": 0.75} if precision == "int8"
           else {"max_abs_diff": 1e-3 * max(scale, 1.0), "argmax_agreement": 1.0})
    return outputs, tol


def bundle(onnx_file: Path, output: Path, seq_len: int | None = None, threads: tuple[int, ...] = (1,),
           profile_models: Path | None = None, texts_from: str | None = None, task: str | None = None,
           texts: int = 200) -> Path:
    """``profile_models`` (a ``sensi-edge profile --keep-models`` folder) lets ``run.py --profile`` measure a latency
    profile on the board; ``texts_from`` + ``task`` ship that many validation texts, tokenized here, so run.py
    also times real inputs at their own lengths."""
    onnx_file, output = _checked(onnx_file, output, seq_len, threads, profile_models, texts_from, task, texts)
    v = describe(onnx_file)
    seq = seq_len or default_seq_len(v.is_qa)
    checks.seq_len("--seq-len", seq, _max_positions(onnx_file))
    with staged_output(output, "bundle") as work:
        shutil.copy2(onnx_file, work / "model.onnx")
        tok_file = onnx_file.parent / "tokenizer.json"
        feed = _sample_inputs(onnx_file.parent, seq)
        if tok_file.is_file():
            shutil.copy2(tok_file, work / "tokenizer.json")
        outputs, tol = _samples_and_tolerance(work, feed, v.precision)
        manifest = {
            "name": v.name, "model": "model.onnx", "samples": "samples.npz", "outputs": outputs, "tolerance": tol,
            "seq_len": seq, "batch": 1, "threads": list(threads), "int8": v.precision == "int8",
            "flops": encoder_flops(v.geometry, seq) if v.geometry else None,
            "geometry": v.geometry.to_dict() if v.geometry else None, "metric": v.metric,
            "tokenizer": "tokenizer.json" if tok_file.is_file() else None,
            "labels": _label_names(onnx_file.parent, v.is_qa),
            "gemm": {"fp32": "gemm_fp32.onnx", "int8": "gemm_int8.onnx"},
            "created_with": bundle_runtime.environment()["versions"],
        }
        if profile_models is not None:
            shutil.copytree(profile_models, work / "profile_models")
            manifest["profile_models"] = "profile_models"
        if texts_from is not None:
            manifest["real_inputs"] = _real_inputs(onnx_file, work, texts_from, task, texts)
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.copy2(bundle_runtime.__file__, work / "run.py")
        for kind, blob in bundle_runtime.gemm_models().items():
            (work / f"gemm_{kind}.onnx").write_bytes(blob)
        (work / "README.txt").write_text(
            "sensi-edge device bundle\n\n"
            "  pip install onnxruntime numpy        # tokenizers is optional\n"
            "  python3 run.py --threads 1 2 4       # checks outputs, then writes report.json\n\n"
            "Copy report.json back and merge reports with `sensi-edge report A.json B.json --output merged`.\n")
    return output


def _label_names(folder: Path, qa: bool) -> list[str] | None:
    """The classifier's label names in logit order, from the export folder's config.json (which export writes
    with the task's names), so an app on the board names its outputs as the PyTorch pipeline does. None for QA
    (start/end logits) or a bare .onnx without a config."""
    path = folder / "config.json"
    if qa or not path.is_file():
        return None
    id2label = json.loads(path.read_text()).get("id2label") or {}
    return [id2label[k] for k in sorted(id2label, key=int)] or None


def _real_inputs(onnx_file: Path, work: Path, data: str, task: str, n: int) -> dict:
    """Validation texts as run.py times them: token ids concatenated with their lengths (real_inputs.npz) and the
    raw texts (real_texts.json, for timing the tokenizer where the board has the tokenizers package)."""
    from .bench import BenchConfig, real_input_feeds

    feeds, _, seq = real_input_feeds(BenchConfig(models=(onnx_file,), texts_from=data, task=task, texts=n, passes=1),
                                     [describe(onnx_file)])
    lengths = np.array([f["input_ids"].shape[1] for f in feeds], dtype=np.int64)
    np.savez(work / "real_inputs.npz", lengths=lengths,
             **{k: np.concatenate([f[k][0] for f in feeds]) for k in ("input_ids", "attention_mask", "token_type_ids")})
    from .data import load_task_data
    from .tasks import get_task

    _, val, spec = load_task_data(data, get_task(task))
    rows = val.select(range(len(feeds)))
    (work / "real_texts.json").write_text(json.dumps([[r[c] for c in spec.text_columns] for r in rows]) + "\n")
    return {"ids": "real_inputs.npz", "texts": "real_texts.json", "rows": len(feeds), "truncated_at": seq,
            "data": data, "task": task}


def _sample_inputs(folder: Path, seq: int) -> dict:
    """Real sentence pairs through the export's tokenizer, padded to ``seq`` (random ids if none)."""
    if (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(folder))
        enc = tok([a for a, _ in SAMPLE_TEXTS], [b for _, b in SAMPLE_TEXTS], padding="max_length", truncation=True,
                  max_length=seq, return_tensors="np")
        return {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
    return bundle_runtime.random_inputs(len(SAMPLE_TEXTS), seq)
