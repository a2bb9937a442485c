"""OUT/model/README.md: a Hugging Face model card written from the compress report, so that
``push_to_hub`` publishes something a stranger can use (what it is, how good, how to load)."""
from __future__ import annotations

from pathlib import Path


def render(report: dict) -> str:
    task, m = report["task"], report["metric"]
    dense = report["dense_baseline"][m] if report["dense_baseline"] else None
    comp = report["compressed"][m]
    p = report["params"]
    base = report["model"]
    base_id = base if not Path(base).exists() else Path(base).name  # a local path says nothing to a stranger
    pipeline_tag = "question-answering" if task.get("kind") == "qa" else "text-classification"
    labels = task.get("label_names")
    front = ["---", "library_name: transformers", f"pipeline_tag: {pipeline_tag}", f"base_model: {base_id}",
             "tags:", "- sensi-edge", "- pruned", "- bert", "---", ""]
    delta = f" ({comp - dense:+.2f})" if dense is not None else ""
    lines = front + [
        f"# {base_id}, trimmed to {p['encoder_ratio']:.0%} of its encoder for {task['name']}",
        "",
        "Made with sensi-edge (Sensi-BERT-style sensitivity trimming, arXiv 2307.11764): attention heads and "
        "FFN neurons were ranked by sensitivity and physically removed while fine-tuning, so the model is really "
        "smaller.",
        "",
        "| | dense fine-tune | this model |",
        "|---|---|---|",
        f"| validation {m} | {dense:.2f} |" if dense is not None else f"| validation {m} | (not run) |",
    ]
    lines[-1] += f" {comp:.2f}{delta} |"
    lines += [
        f"| encoder parameters | {p['encoder_before']:,} | {p['encoder_after_saved']:,} ({p['encoder_ratio']:.1%}) |",
        f"| total parameters | {p['total_before']:,} | {p['total_after_saved']:,} |",
        "",
        f"- task: {task['name']} ({pipeline_tag}); data: `{Path(str(report['data'])).name}` "
        f"({report['rows']['train']} training rows, {report['rows']['validation']} validation rows)",
        f"- budget: {report['budget']['value']} of encoder {report['budget']['kind']}; heads per layer "
        f"{report['plan']['heads_per_layer']} of {report['plan']['dense_heads']}, FFN neurons per layer "
        f"{report['plan']['ffn_per_layer']}",
        f"- recipe: {report['recipe']['epochs']:g} epochs, learning rate {report['recipe']['learning_rate']:g}, "
        f"batch {report['recipe']['batch_size']}, seed {report['recipe']['seed']}",
    ]
    if report.get("trim_rule"):  # reports of older runs and of fisher-mask have none
        tr = report["trim_recipe"]
        lines.append(f"- trimmed fine-tune: {report['trim_steps']} steps, {tr['epochs']:g} epochs, learning rate "
                     f"{tr['learning_rate']:g} ({report['trim_rule']['rule']})")
    if labels:
        lines.append(f"- labels: {', '.join(f'{i} {n}' for i, n in enumerate(labels))}")
    lines += [
        "- latency: not measured by compress; `sensi-edge export` then `sensi-edge bench` measure it on your CPU",
        "",
        "## How to load",
        "",
        "Layers have different sizes, so the model classes need the code saved beside the weights "
        "(`trust_remote_code=True`); the tokenizer is a stock BERT tokenizer:",
        "",
        "```python",
        "from transformers import AutoTokenizer, pipeline",
        *(["# transformers 4.x; transformers 5 has no question-answering pipeline: call the model and take the",
            "# best start/end span of its start_logits / end_logits"] if pipeline_tag == "question-answering" else []),
        f'pipe = pipeline("{pipeline_tag}", model="PATH_OR_HUB_ID", trust_remote_code=True)',
        'tok = AutoTokenizer.from_pretrained("PATH_OR_HUB_ID")',
        "```",
        "",
        "For ONNX Runtime (fp32 and int8, verified against this model): `sensi-edge export PATH --onnx --output ONNX_DIR`,",
        "then `optimum.onnxruntime.ORTModelFor"
        + ("QuestionAnswering" if task.get("kind") == "qa" else "SequenceClassification")
        + '.from_pretrained(ONNX_DIR, file_name="model_int8_dynamic.onnx")`.',
        "",
    ]
    return "\n".join(lines)


def write(model_dir: Path, report: dict) -> None:
    (Path(model_dir) / "README.md").write_text(render(report))
