"""Fine-tuning through the Hugging Face Trainer, with an optional trim schedule.

Masks are applied by a TrainerCallback (not a Trainer subclass), so the Trainer's own features
-- device placement, checkpoints, resume -- work unchanged (the compress pipeline around it is
single-process). A resumed run recomputes the masks from the plan and the step number, so
nothing about masks is stored.

Self-distillation (``teacher=``) is the one place that needs a Trainer subclass: the loss itself
changes (``compute_loss`` is the Trainer's documented hook for that). The teacher is our own dense
fine-tuned model; its outputs are computed on the fly under ``no_grad`` for the very batch the
student sees, so nothing extra is stored and resume is unaffected.
"""
from __future__ import annotations

import math
from pathlib import Path

from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

from . import distributed
from .artifacts import TrimPlan
from .masking import MaskSet, attach
from .recipe import PRECISIONS, Recipe  # noqa: F401  (re-exported: the recipe is a training setting)
from .runners import INPUT_NAMES


class TrimSchedule:
    """Masks for step t: the plan's removed units go in order of rising importance over a ramp.

    ``ramp`` is the fraction of training steps over which the trim grows from nothing to the
    plan (0 = one-shot: the plan's masks from the first step).
    """

    def __init__(self, plan: TrimPlan, head_importance, neuron_importance, ramp: float):
        self.plan, self.ramp = plan, ramp
        self.masks = MaskSet.from_plan(plan)
        self._removed_heads = [
            sorted(set(range(n)) - set(keep), key=lambda h, imp=imp: imp[h])
            for n, keep, imp in zip(plan.dense.heads, plan.keep_heads, head_importance)
        ]
        self._removed_neurons = [
            sorted(set(range(n)) - set(keep), key=lambda j, imp=imp: imp[j])
            for n, keep, imp in zip(plan.dense.ffn, plan.keep_neurons, neuron_importance)
        ]
        self._last = None

    def progress(self, step: int, max_steps: int) -> float:
        if self.ramp <= 0 or max_steps <= 0:
            return 1.0
        return min(1.0, step / (self.ramp * max_steps))

    def apply(self, step: int, max_steps: int) -> None:
        p = self.progress(step, max_steps)
        if p == self._last:
            return
        self._last = p

        def keep(plan_keep, removed):
            n_out = int(math.floor(p * len(removed)))
            return sorted(set(plan_keep) | set(removed[n_out:]))

        self.masks.set_keep(
            [keep(k, r) for k, r in zip(self.plan.keep_heads, self._removed_heads)],
            [keep(k, r) for k, r in zip(self.plan.keep_neurons, self._removed_neurons)],
        )


class _LogFinalStep(TrainerCallback):
    """The Trainer checkpoints the last step whatever ``save_steps`` says, but logs it only when it falls on
    ``logging_steps``; logging it always keeps every checkpoint step a logging step, which is what
    ``_whole_run_train_loss`` relies on (a resume from the final checkpoint trains nothing more)."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_log = True
        return control


class _ScheduleCallback(TrainerCallback):
    def __init__(self, schedule: TrimSchedule):
        self.schedule = schedule

    def on_step_begin(self, args, state, control, **kwargs):
        self.schedule.apply(state.global_step, state.max_steps)

    def on_train_end(self, args, state, control, **kwargs):
        self.schedule.apply(state.max_steps, state.max_steps)


DISTILL_ALPHA = 0.5  # weight of the task loss; 1 - alpha goes to matching the teacher
DISTILL_TEMPERATURE = 2.0  # Hinton et al. 2015; the KL term is scaled by T^2 so its gradients keep their size


def distill_loss(student_out, teacher_out, attention_mask=None, temperature: float = DISTILL_TEMPERATURE):
    """KL(teacher || student) on softened outputs: class logits, or (QA) start and end logits over the
    sequence, where padded positions are excluded (set to -inf-like) in both distributions."""
    import torch.nn.functional as F

    def kl(s, t):
        return F.kl_div(F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1), log_target=True,
                        reduction="batchmean") * temperature ** 2

    if getattr(student_out, "logits", None) is not None:
        return kl(student_out.logits, teacher_out.logits)
    pad = (attention_mask == 0) if attention_mask is not None else None
    total = 0.0
    for name in ("start_logits", "end_logits"):
        s, t = getattr(student_out, name), getattr(teacher_out, name)
        if pad is not None:
            s, t = s.masked_fill(pad, -1e4), t.masked_fill(pad, -1e4)
        total = total + kl(s, t)
    return total / 2


def hidden_distill_loss(student_hidden, teacher_hidden, attention_mask=None):
    """Layer-wise hidden-state matching (CoFi, Xia et al. 2022, without their layer mapping: trimming keeps
    every layer and the hidden size, so layer l of the student answers layer l of the teacher).

    Per layer: squared error over the real (unpadded) tokens divided by the teacher's mean square there,
    so a layer whose activations are large does not outweigh the rest; the mean over the layers' outputs
    (the embedding output, index 0, is not trimmed and is skipped)."""
    total, layers = 0.0, 0
    keep = attention_mask.unsqueeze(-1).to(teacher_hidden[1].dtype) if attention_mask is not None else None
    for s, t in zip(student_hidden[1:], teacher_hidden[1:]):
        if keep is None:
            err, ref = ((s - t) ** 2).mean(), (t ** 2).mean()
        else:
            err, ref = (((s - t) ** 2) * keep).sum(), ((t ** 2) * keep).sum()
        total, layers = total + err / ref.clamp_min(1e-12), layers + 1
    return total / max(layers, 1)


class _DistillTrainer(Trainer):
    def __init__(self, *args, teacher=None, hidden_weight: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.hidden_weight = hidden_weight
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        import torch

        hidden = self.hidden_weight > 0
        out = model(**inputs, output_hidden_states=hidden)
        if next(self.teacher.parameters()).device != out.loss.device:
            self.teacher.to(out.loss.device)
        with torch.no_grad():
            teacher_out = self.teacher(**{k: v for k, v in inputs.items() if k in INPUT_NAMES},
                                       output_hidden_states=hidden)
        mask = inputs.get("attention_mask")
        loss = DISTILL_ALPHA * out.loss + (1 - DISTILL_ALPHA) * distill_loss(out, teacher_out, mask)
        if hidden:
            loss = loss + self.hidden_weight * hidden_distill_loss(out.hidden_states, teacher_out.hidden_states, mask)
        return (loss, out) if return_outputs else loss


def finetune(model, tokenizer, train_encoded, recipe: Recipe, output_dir: Path, resume: bool = False,
             schedule: TrimSchedule | None = None, max_steps: int | None = None, teacher=None,
             hidden_weight: float = 0.0):
    """Train ``model`` in place; checkpoints go to ``output_dir`` and a rerun with resume continues them.

    With a schedule, its masks stay attached to the returned model (the caller removes them after
    surgery); the final masks are the plan's. With a ``teacher``, the loss is
    ``DISTILL_ALPHA * task loss + (1 - DISTILL_ALPHA) * distill_loss(student, teacher)``, plus
    ``hidden_weight * hidden_distill_loss`` when that weight is > 0.
    """
    output_dir = Path(output_dir)
    args = _training_arguments(recipe, output_dir, max_steps)
    callbacks = [_LogFinalStep()]
    handle = None
    if schedule is not None:
        handle = attach(model, schedule.masks)
        callbacks.append(_ScheduleCallback(schedule))
    kwargs = dict(model=model, args=args, train_dataset=train_encoded, data_collator=DataCollatorWithPadding(tokenizer),
                  callbacks=callbacks)
    trainer = _DistillTrainer(**kwargs, teacher=teacher, hidden_weight=hidden_weight) if teacher is not None else Trainer(**kwargs)
    # rank 0 alone looks for (and deletes torn) checkpoints; every rank resumes from the one it found
    last = last_complete_checkpoint(output_dir) if resume and output_dir.is_dir() and distributed.world().is_main else None
    last = distributed.from_main(str(last) if last else None)
    last = Path(last) if last else None
    result = trainer.train(resume_from_checkpoint=str(last) if last else None)
    # mixed precision patches the model's forward with an autocast wrapper; scoring, the parity check and
    # everything after the fine-tune run the model in fp32, as it is saved
    model = trainer.accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    train_loss = _whole_run_train_loss(trainer, result.training_loss, last)
    if not math.isfinite(train_loss) or not all(bool(p.isfinite().all()) for p in model.parameters()):
        from .errors import SensiEdgeError

        raise SensiEdgeError(f"fine-tuning diverged (train loss {train_loss}, non-finite weights); lower "
                             f"--learning-rate (now {recipe.learning_rate:g}) and rerun without --resume")
    return model, handle, {"steps": result.global_step, "train_loss": train_loss,
                           "resumed_from_step": _step_of(last) if last else None}


def _training_arguments(recipe: Recipe, output_dir: Path, max_steps: int | None) -> TrainingArguments:
    """The Trainer's arguments for one fine-tune of the recipe (this process's device, precision, launcher)."""
    # The first mixed-precision Trainer of a process leaves its precision behind: TrainingArguments writes it to
    # ACCELERATE_MIXED_PRECISION (and reads it back as the default) and accelerate keeps it in a process-wide
    # state. A later fp32 fine-tune in the same process (a library caller, the test suite) would silently train
    # in bf16. Each fine-tune states its own precision.
    import os

    from accelerate.state import AcceleratorState

    os.environ["ACCELERATE_MIXED_PRECISION"] = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[recipe.precision]
    AcceleratorState._reset_state(reset_partial_state=False)
    args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate,
        num_train_epochs=recipe.epochs,
        max_steps=max_steps if max_steps else -1,
        weight_decay=recipe.weight_decay,
        lr_scheduler_type="linear",
        save_strategy="steps",
        save_steps=recipe.save_steps,
        save_total_limit=1,
        # every checkpoint step is also a logging step, so the losses before a resume point are all in the
        # restored log history (see _whole_run_train_loss)
        logging_steps=math.gcd(50, recipe.save_steps),
        report_to=[],
        seed=recipe.seed,
        data_seed=recipe.seed,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        disable_tqdm=False,
        # without a GPU, say so: accelerate only forms a multi-process CPU group (DDP over gloo) when told
        use_cpu=distributed.device_for(distributed.world()) == "cpu",
        ddp_find_unused_parameters=False,  # every weight takes part (masks multiply, they do not skip)
        bf16=recipe.precision == "bf16",
        fp16=recipe.precision == "fp16",
        # under a launcher --batch-size stays the global batch, split over the processes (see Recipe)
        **({"accelerator_config": {"split_batches": True}} if distributed.world().distributed else {}),
        **_version_specific(recipe),
    )
    return args


def _step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[1])


def _checkpoint_is_complete(folder: Path) -> bool:
    """The Trainer writes a checkpoint's weights, optimizer, scheduler and RNG state, then trainer_state.json
    last; a kill during the write leaves a folder without it, or with a truncated file. Both are torn."""
    import json
    import zipfile

    try:
        json.loads((folder / "trainer_state.json").read_text())
        weights = folder / "model.safetensors"
        if weights.is_file():
            from safetensors import safe_open

            with safe_open(str(weights), "pt") as st:
                st.keys()
        elif not zipfile.is_zipfile(folder / "pytorch_model.bin"):
            return False
        # torch.save writes zip archives whose directory is at the end: a truncated file is not a zip
        return all(zipfile.is_zipfile(folder / n) for n in ("optimizer.pt", "scheduler.pt"))
    except Exception:  # missing, truncated or unparsable: torn
        return False


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint that was completely written; torn ones (a kill mid-write) are deleted, so
    ``--resume`` continues from the one before instead of crashing on it."""
    import shutil

    found = sorted((p for p in Path(output_dir).glob("checkpoint-*") if p.is_dir() and p.name[11:].isdigit()),
                   key=_step_of, reverse=True)
    for ckpt in found:
        if _checkpoint_is_complete(ckpt):
            return ckpt
        shutil.rmtree(ckpt, ignore_errors=True)
    return None


def _whole_run_train_loss(trainer, session_loss: float, resumed_from: Path | None) -> float:
    """Mean training loss over all steps, also when the run was resumed.

    After a resume the Trainer's ``training_loss`` is the losses summed over this session only,
    divided by *all* steps. The steps before the checkpoint are in the restored log history (every
    checkpoint step is a logging step), each entry the mean loss since the previous one.
    """
    steps = trainer.state.global_step
    if resumed_from is None or steps == 0:
        return session_loss
    resume_step, before, prev = _step_of(resumed_from), 0.0, 0
    for entry in trainer.state.log_history:
        if "loss" in entry and entry["step"] <= resume_step:
            before += entry["loss"] * (entry["step"] - prev)
            prev = entry["step"]
    return (before + session_loss * steps) / steps


def _version_specific(recipe: Recipe) -> dict:
    """TrainingArguments that transformers 5 renamed: warm-up as a ratio (4.57 ``warmup_ratio``; 5.x a float
    ``warmup_steps`` < 1, the same ceil(ratio x steps)) and length-grouped batches (4.57 ``group_by_length``;
    5.x ``train_sampling_strategy``), which cut padding, most of a CPU step's time."""
    import inspect

    from transformers import TrainingArguments

    params = inspect.signature(TrainingArguments.__init__).parameters
    out = {"warmup_ratio": recipe.warmup_ratio} if "warmup_ratio" in params else {"warmup_steps": recipe.warmup_ratio}
    if "group_by_length" in params:
        out["group_by_length"] = True
    else:
        out["train_sampling_strategy"] = "group_by_length"
    return out
