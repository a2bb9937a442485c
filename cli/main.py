"""sensi-edge command line: parse flags, build a config, call one library function, print a summary."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

# the configs carry every option's default, help and choices (light imports: no torch, no transformers)
from sensi_edge.bench import BenchConfig
from sensi_edge.compress import CompressConfig
from sensi_edge.export import ExportConfig
from sensi_edge.latency import ProfileConfig

from .generate import extra_option, from_config

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
@from_config(CompressConfig, extra=(
    extra_option("bf16", bool, False, "fine-tune in bfloat16 mixed precision (GPU, or a CPU with bf16)", "--bf16"),
    extra_option("fp16", bool, False, "fine-tune in float16 mixed precision (CUDA GPU only)", "--fp16"),
    extra_option("resume", bool, False, "continue an interrupted run in OUTPUT.partial"),
))
def compress(cfg: CompressConfig, bf16: bool, fp16: bool, resume: bool):
    """Rank tensors by sensitivity, trim to the budget while fine-tuning, save a really smaller model."""
    from dataclasses import replace

    from sensi_edge.compress import compress as run

    if bf16 or fp16:
        cfg = replace(cfg, recipe=replace(cfg.recipe, precision=_precision(bf16, fp16)))
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
@from_config(ProfileConfig)
def profile(cfg: ProfileConfig):
    """Measure what a head and an FFN neuron cost on this CPU; the table `compress --budget-kind latency` plans with."""
    from sensi_edge.latency import profile as run

    f = run(cfg, log=lambda m: typer.echo(m, err=True))["fit"]
    typer.echo(f"{cfg.output}: {f['fixed_ms']:.3f} ms + {f['per_head_ms'] * 1e3:.2f} us/head + "
               f"{f['per_neuron_ms'] * 1e3:.3f} us/neuron at {cfg.seq_len} tokens, {cfg.threads} thread(s); "
               f"leave-one-out error max {f['loo_max_rel_error']:.1%}")


@app.command()
@_guarded
@from_config(ExportConfig, extra=(
    extra_option("onnx", bool, False, "export to ONNX (the only format so far; required)", "--onnx"),
    extra_option("allow_rejected", bool, False, "exit 0 even when a variant is rejected"),
))
def export(cfg: ExportConfig, onnx: bool, allow_rejected: bool):
    """Export fused fp32 and int8 ONNX variants and verify each against PyTorch and the task metric."""
    from sensi_edge.export import export as run

    if not onnx:
        _fail("pass --onnx (ONNX is the only export format)")
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
@from_config(BenchConfig, extra=(
    extra_option("output", Path, Path("bench_report.json"), "JSON report (a .md table is written beside it)"),
    extra_option("no_baseline", bool, False, "measure without a baseline"),
    extra_option("overwrite", bool, False, "replace --output even if sensi-edge did not write it"),
))
def bench(cfg: BenchConfig, output: Path, no_baseline: bool, overwrite: bool):
    """Latency of model folders and ONNX files, interleaved, with ratios to a baseline measured in the same run."""
    from dataclasses import replace

    from sensi_edge.bench import bench as run, check_output, render_markdown, save

    if no_baseline:
        cfg = replace(cfg, auto_baseline=False)
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
