"""sensi-edge command line: parse flags, build a config, call one library function, print a summary."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from sensi_edge.methods import METHODS  # the --method choices and their help (a light import: no torch)

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Sensitivity-driven trimming of BERT models for edge devices.")


@app.callback()
def _root() -> None:
    """sensi-edge: compress, export, evaluate and benchmark BERT models for edge devices."""


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


DEBUG_ENV = "SENSI_EDGE_DEBUG"  # set to 1 to see the traceback of any error


def _guarded(command):
    """Every command's errors as one line: user errors exit 2, Ctrl-C / SIGTERM 130, and anything
    unexpected (a bug) also one line that says how to get the traceback -- never a raw traceback."""
    import functools
    import os
    import signal

    @functools.wraps(command)
    def run(*args, **kwargs):
        from sensi_edge.compress import Interrupted
        from sensi_edge.errors import SensiEdgeError, first_line

        def terminate(signum, frame):
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, terminate)
        try:
            if command.__name__ != "compress":  # the one command that runs under torchrun / accelerate launch
                from sensi_edge.distributed import refuse_launcher

                refuse_launcher(command.__name__)
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Interrupted as exc:
            typer.echo(f"\nerror: {exc}", err=True)  # on a line of its own, not after a progress bar
            raise typer.Exit(130)
        except KeyboardInterrupt:
            typer.echo("\nerror: interrupted; nothing was published, rerun the command", err=True)
            raise typer.Exit(130)
        except SensiEdgeError as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            _fail(str(exc).replace("\n", " "))
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            _fail(f"internal error ({type(exc).__name__}: {first_line(exc)}); this is a bug in sensi-edge: rerun "
                  f"with {DEBUG_ENV}=1 for the traceback and report it")
        finally:
            signal.signal(signal.SIGTERM, previous)

    return run


def _precision(bf16: bool, fp16: bool) -> str:
    from sensi_edge.errors import SensiEdgeError

    if bf16 and fp16:
        raise SensiEdgeError("--bf16 and --fp16 both given; pick one")
    return "bf16" if bf16 else "fp16" if fp16 else "fp32"


@app.command()
@_guarded
def compress(
    task: str = typer.Option(..., help="sst2 | mnli | qnli | qqp | text-classification | squad"),
    data: str = typer.Option(..., help="folder of split files (train.jsonl, validation.jsonl ...) or hub NAME[:CONFIG]"),
    output: Path = typer.Option(..., help="run folder; the model lands in OUTPUT/model, the report in OUTPUT/report.json"),
    model: Optional[str] = typer.Option(None, help="hub id or local folder [default: packaged all-MiniLM-L6-v2]"),
    budget: float = typer.Option(0.5, help="fraction (0, 1] of the dense encoder to keep, or a count with --absolute"),
    budget_kind: str = typer.Option("params", help="params | flops (FLOPs at --max-seq-length) | latency (--budget in ms per sequence, needs --latency-profile)"),
    latency_profile: Optional[Path] = typer.Option(None, help="a `sensi-edge profile` JSON: the latency budget's table, and the report's predicted latency"),
    absolute: bool = typer.Option(False, help="read --budget as an absolute encoder parameter / FLOP count"),
    epochs: float = typer.Option(3.0, help="fine-tuning epochs (dense baseline and trimmed model alike)"),
    learning_rate: float = typer.Option(5e-5),
    batch_size: int = typer.Option(32, help="global batch: under torchrun / accelerate launch split over the processes"),
    bf16: bool = typer.Option(False, "--bf16", help="fine-tune in bfloat16 mixed precision (GPU, or a CPU with bf16)"),
    fp16: bool = typer.Option(False, "--fp16", help="fine-tune in float16 mixed precision (CUDA GPU only)"),
    max_train_samples: Optional[int] = typer.Option(None, help="subsample the training split"),
    max_eval_samples: Optional[int] = typer.Option(None, help="subsample the validation split"),
    max_seq_length: Optional[int] = typer.Option(None, help="[default: 128, 384 for squad]"),
    doc_stride: int = typer.Option(128, help="squad: token overlap between windows of a long context (capped at half of --max-seq-length)"),
    seed: int = typer.Option(42),
    calibration_samples: int = typer.Option(1024, help="held-out training rows for sensitivity analysis"),
    sensitivity: str = typer.Option("probe", help="probe (trim each group, measure loss) | fisher (gradient estimate)"),
    probe_density: float = typer.Option(0.5, help="density each group is trimmed to when probed"),
    warmup_fraction: Optional[float] = typer.Option(None, help="one-fine-tune mode (--no-baseline): brief dense fine-tune before sensitivity, as a fraction of the recipe's steps [default: 0.1]"),
    allocation: str = typer.Option("calibrated", help="calibrated (Fisher per unit of cost, scaled per group by its measured probe, shrunk to the median within the probe's noise) | calibrated-unshrunk (no shrinkage) | rank (rank rule of the first version)"),
    floor_heads: Optional[float] = typer.Option(None, help="share of every layer's heads always kept [default: 0.15; squad 0.3]"),
    floor_ffn: Optional[float] = typer.Option(None, help="share of every layer's FFN neurons always kept [default: 0.1; squad 0.2]"),
    distill: bool = typer.Option(False, help="trimmed fine-tune also matches the dense fine-tuned model's outputs (needs the baseline)"),
    distill_hidden: float = typer.Option(0.0, help="with --distill: weight of layer-wise hidden-state matching (0 = outputs only)"),
    trim_epochs: Optional[float] = typer.Option(None, help="epochs of the trimmed fine-tune [default: --epochs]"),
    trim_learning_rate: Optional[float] = typer.Option(None, help="learning rate of the trimmed fine-tune [default: --learning-rate]"),
    ramp: float = typer.Option(0.3, help="fraction of trimmed fine-tuning over which the trim grows (0 = one-shot)"),
    baseline: bool = typer.Option(True, help="fine-tune the dense model first: scored as the baseline, analysed and trimmed from (--no-baseline: one fine-tune, from a brief warm-up)"),
    method: str = typer.Option("sensitivity", help=" | ".join(f"{m.name} ({m.summary})" for m in METHODS.values())),
    text_column: Optional[List[str]] = typer.Option(None, help="text column(s) for text-classification (1 or 2)"),
    label_column: Optional[str] = typer.Option(None),
    num_labels: Optional[int] = typer.Option(None, help="label count [default: preset or inferred]"),
    resume: bool = typer.Option(False, help="continue an interrupted run in OUTPUT.partial"),
    reuse: Optional[Path] = typer.Option(None, help="reuse the baseline/warm-up/sensitivity of a run kept with --keep-intermediate"),
    keep_intermediate: bool = typer.Option(False, help="keep warm_model/ and dense_model/ so other budgets/methods can --reuse them"),
):
    """Rank tensors by sensitivity, trim to the budget while fine-tuning, save a really smaller model."""
    from sensi_edge.compress import CompressConfig, compress as run
    from sensi_edge.finetune import Recipe

    cfg = CompressConfig(
        task=task, data=data, output=output, model=model, budget=budget, budget_kind=budget_kind, absolute=absolute,
        latency_profile=latency_profile,
        recipe=Recipe(epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, seed=seed,
                      precision=_precision(bf16, fp16)),
        max_train_samples=max_train_samples, max_eval_samples=max_eval_samples, max_seq_length=max_seq_length,
        doc_stride=doc_stride,
        calibration_samples=calibration_samples, sensitivity_method=sensitivity, probe_density=probe_density,
        warmup_fraction=warmup_fraction, ramp=ramp, trim_epochs=trim_epochs, trim_learning_rate=trim_learning_rate, baseline=baseline, allocation=allocation, floor_heads=floor_heads,
        floor_ffn=floor_ffn, distill=distill, distill_hidden=distill_hidden, method=method, reuse=reuse,
        keep_intermediate=keep_intermediate, text_columns=tuple(text_column or ()),
        label_column=label_column, num_labels=num_labels,
    )
    result = run(cfg, resume=resume, log=lambda m: typer.echo(m, err=True))
    from sensi_edge.distributed import world

    if not world().is_main:
        return  # under a launcher rank 0 speaks for the run
    r = result.report
    m = r["metric"]
    base = f"{r['dense_baseline'][m]:.2f}" if r["dense_baseline"] else "n/a"
    typer.echo(
        f"{r['task']['name']}: {m} {r['compressed'][m]:.2f} (dense {base}); encoder params "
        f"{r['params']['encoder_after_saved']:,}/{r['params']['encoder_before']:,} ({r['params']['encoder_ratio']:.1%}); "
        f"wall {r['wall_seconds']['total']:.0f}s -> {result.output}"
    )


@app.command()
@_guarded
def profile(
    output: Path = typer.Option(..., help="the latency profile (JSON) to write"),
    model: Optional[str] = typer.Option(None, help="the base model whose depth and widths to profile [default: packaged all-MiniLM-L6-v2]"),
    threads: int = typer.Option(1, help="ONNX Runtime intra-op threads (plan for the threads the target will use)"),
    seq_len: int = typer.Option(128, help="tokens per sequence the latency is predicted for"),
    precision: str = typer.Option("int8", help="int8 (dynamic, what export makes) | fp32"),
    points: int = typer.Option(12, help="irregular models timed for the fit (dense and nearly empty included)"),
    seconds: float = typer.Option(1.0, help="measured time per model (at least 50 runs each)"),
    keep_models: Optional[Path] = typer.Option(None, help="keep the profile's ONNX models in this new folder (bundle them for a board)"),
    overwrite: bool = typer.Option(False, help="replace an existing --output"),
    layernorm: str = typer.Option("auto", help="residual LayerNorms as export makes them: auto (faster form here) | skip | split"),
):
    """Measure what a head and an FFN neuron cost on this CPU; the table `compress --budget-kind latency` plans with."""
    from sensi_edge.latency import ProfileConfig, profile as run

    r = run(ProfileConfig(output=output, model=model, threads=threads, seq_len=seq_len, precision=precision,
                          points=points, seconds=seconds, keep_models=keep_models, overwrite=overwrite,
                          layernorm=layernorm),
            log=lambda m: typer.echo(m, err=True))
    f = r["fit"]
    typer.echo(f"{output}: {f['fixed_ms']:.3f} ms + {f['per_head_ms'] * 1e3:.2f} us/head + "
               f"{f['per_neuron_ms'] * 1e3:.3f} us/neuron at {seq_len} tokens, {threads} thread(s); "
               f"leave-one-out error max {f['loo_max_rel_error']:.1%}")


@app.command()
@_guarded
def export(
    model_dir: Path = typer.Argument(..., help="a compress OUT/model folder or any BERT classification checkpoint"),
    onnx: bool = typer.Option(False, "--onnx", help="export to ONNX (the only format so far; required)"),
    output: Path = typer.Option(..., help="folder for the ONNX variants, tokenizer and export_report.json/.md"),
    quantize: List[str] = typer.Option(["dynamic"], help="none | dynamic | static (repeat for several); fp32 is always made"),
    task: Optional[str] = typer.Option(None, help="task preset [default: from the compress report beside the model]"),
    data: Optional[str] = typer.Option(None, help="task data [default: from the compress report]"),
    split: Optional[str] = typer.Option(None, help="split to verify on [default: the task's validation split]"),
    max_eval_samples: Optional[int] = typer.Option(None),
    parity_rows: int = typer.Option(64, help="validation rows for the logit parity check"),
    calibration_rows: int = typer.Option(128, help="training rows that calibrate static quantization"),
    max_metric_drop: float = typer.Option(1.0, help="reject a variant losing more points than this"),
    allow_rejected: bool = typer.Option(False, help="exit 0 even when a variant is rejected"),
    max_seq_length: Optional[int] = typer.Option(None, help="[default: 128, 384 for squad]"),
    doc_stride: int = typer.Option(128),
    opset: int = typer.Option(17),
    preset: Optional[str] = typer.Option(None, help="int8 preset: vnni | avx2 | avx512 | arm64 [default: this CPU]"),
    weight_type: Optional[str] = typer.Option(None, help="override the preset: qint8 | quint8"),
    per_channel: Optional[bool] = typer.Option(None, "--per-channel/--no-per-channel", help="override the preset"),
    reduce_range: Optional[bool] = typer.Option(None, "--reduce-range/--no-reduce-range", help="override the preset"),
    threads: Optional[int] = typer.Option(None, help="ONNX Runtime intra-op threads"),
    layernorm: str = typer.Option("auto", help="residual LayerNorms: auto (time both forms here, keep the faster) | skip (fused SkipLayerNormalization) | split (Add + LayerNormalization)"),
):
    """Export fused fp32 and int8 ONNX variants and verify each against PyTorch and the task metric."""
    from sensi_edge.export import ExportConfig, export as run

    if not onnx:
        _fail("pass --onnx (ONNX is the only export format)")
    cfg = ExportConfig(model_dir=model_dir, output=output, quantize=tuple(quantize), task=task, data=data, eval_split=split,
                       max_eval_samples=max_eval_samples, parity_rows=parity_rows, calibration_rows=calibration_rows,
                       max_metric_drop=max_metric_drop, max_seq_length=max_seq_length, doc_stride=doc_stride,
                       opset=opset, preset=preset, weight_type=weight_type, per_channel=per_channel,
                       reduce_range=reduce_range, threads=threads, layernorm=layernorm)
    result = run(cfg, log=lambda m: typer.echo(m, err=True))
    for v in result.report["variants"]:
        typer.echo(f"{v['status']:>8}  {v['name']:<13} {result.output / v['file']}")
    if result.rejected and not allow_rejected:
        typer.echo(f"error: rejected variants: {', '.join(result.rejected)} (see {result.output / 'export_report.md'}); "
                   "pass --allow-rejected to accept", err=True)
        raise typer.Exit(1)


@app.command()
@_guarded
def evaluate(
    path: Path = typer.Argument(..., help="a PyTorch model folder or an .onnx file"),
    task: str = typer.Option(...),
    data: str = typer.Option(...),
    split: Optional[str] = typer.Option(None, help="[default: the task's validation split]"),
    max_samples: Optional[int] = typer.Option(None),
    max_seq_length: Optional[int] = typer.Option(None, help="[default: 128, 384 for squad]"),
    batch_size: int = typer.Option(64),
    threads: Optional[int] = typer.Option(None),
    tokenizer: Optional[str] = typer.Option(None, help="tokenizer folder [default: beside the model]"),
    text_column: Optional[List[str]] = typer.Option(None),
    label_column: Optional[str] = typer.Option(None),
    num_labels: Optional[int] = typer.Option(None),
    json_out: bool = typer.Option(False, "--json", help="print the result as JSON"),
):
    """Score a PyTorch folder or an ONNX file on a task split (same code path for both)."""
    import json

    from sensi_edge.tasks.scoring import evaluate_path

    r = evaluate_path(path, task, data, split, max_samples, max_seq_length, batch_size, threads, tokenizer,
                      text_columns=list(text_column or []), label_column=label_column, num_labels=num_labels)
    if json_out:
        typer.echo(json.dumps(r, indent=2))
    else:
        typer.echo(f"{r['path']}: " + ", ".join(f"{k} {v:.2f}" for k, v in r["metrics"].items())
                   + f" on {r['rows']} rows of {r['split']}")


@app.command()
@_guarded
def bench(
    models: List[Path] = typer.Argument(..., help="model folders and/or .onnx files"),
    output: Path = typer.Option(Path("bench_report.json"), help="JSON report (a .md table is written beside it)"),
    baseline: Optional[Path] = typer.Option(None, help="baseline model [default: the dense model the variants came from]"),
    no_baseline: bool = typer.Option(False, help="measure without a baseline"),
    batch: int = typer.Option(1),
    seq_len: Optional[int] = typer.Option(None, help="[default: 128, 384 for QA models]"),
    threads: List[int] = typer.Option([1, 2], help="thread counts (repeat the flag)"),
    runs: int = typer.Option(100, help="runs per variant (or --seconds, whichever comes first)"),
    seconds: float = typer.Option(10.0, help="measured seconds per variant (or --runs)"),
    warmup: int = typer.Option(10),
    texts_from: Optional[str] = typer.Option(None, help="also time batch 1 over this task data's validation texts at their own lengths (with --task)"),
    task: Optional[str] = typer.Option(None, help="the task preset of --texts-from (names its text columns)"),
    texts: int = typer.Option(500, help="validation texts used by --texts-from"),
    passes: int = typer.Option(2, help="times every text runs through every variant"),
    overwrite: bool = typer.Option(False, help="replace --output even if sensi-edge did not write it"),
):
    """Latency of model folders and ONNX files, interleaved, with ratios to a baseline measured in the same run."""
    from sensi_edge.bench import BenchConfig, bench as run, check_output, render_markdown, save

    cfg = BenchConfig(models=tuple(models), baseline=baseline, auto_baseline=not no_baseline, batch=batch, seq_len=seq_len,
                      threads=tuple(threads), warmup=warmup, min_runs=runs, min_seconds=seconds,
                      texts_from=texts_from, task=task, texts=texts, passes=passes)
    check_output(output, overwrite)  # before measuring: a measurement is never lost to an unwritable output
    report = run(cfg, log=lambda m: typer.echo(m, err=True))
    save(report, output, overwrite)
    typer.echo(render_markdown(report))
    typer.echo(f"report: {output}")


@app.command()
@_guarded
def bundle(
    onnx_file: Path = typer.Argument(..., help="an exported .onnx file"),
    output: Path = typer.Option(..., help="bundle folder to copy to the device"),
    seq_len: Optional[int] = typer.Option(None, help="[default: 128, 384 for QA]"),
    threads: List[int] = typer.Option([1], help="default thread counts run.py measures"),
    profile_models: Optional[Path] = typer.Option(None, help="a `profile --keep-models` folder: run.py --profile measures a latency profile on the board"),
    texts_from: Optional[str] = typer.Option(None, help="ship this task data's validation texts so run.py times real inputs (with --task)"),
    task: Optional[str] = typer.Option(None, help="task preset of --texts-from"),
    texts: int = typer.Option(200, help="validation texts shipped with --texts-from"),
):
    """A self-contained folder (model, tokenizer, samples, manifest, run.py) to benchmark on any board."""
    from sensi_edge.bundle import bundle as run

    out = run(onnx_file, output, seq_len, tuple(threads), profile_models, texts_from, task, texts)
    typer.echo(f"bundle: {out} (on the device: pip install onnxruntime numpy && python3 run.py)")


@app.command()
@_guarded
def report(
    reports: List[Path] = typer.Argument(..., help="latency reports from bench or from bundles' run.py"),
    output: Path = typer.Option(Path("merged"), help="writes OUTPUT.md and OUTPUT.png"),
    overwrite: bool = typer.Option(False, help="replace OUTPUT.md / .png even if sensi-edge did not write them"),
):
    """Merge latency reports from several devices and variants into one Markdown table and a plot."""
    from sensi_edge.report import merge

    md, png = merge(reports, output, overwrite)
    typer.echo(f"{md}\n{png}")


def main() -> None:
    """The console script: typer's usage errors (a flag typo, a word where a number belongs) also as one
    ``error:`` line with exit 2, instead of a usage box."""
    # transformers 5 draws a "Loading weights" bar for every from_pretrained: noise between our own progress
    # lines, and it breaks the one-line error contract. Training and hub download bars are not affected.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        code = app(prog_name="sensi-edge", standalone_mode=False)
    except Exception as exc:
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):  # not a usage error: a bug
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":
            typer.echo(exc.format_message())
        else:
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "sensi-edge"
            message = " ".join(exc.format_message().split()).rstrip(".")
            typer.echo(f"error: {message}; see {where} --help", err=True)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
