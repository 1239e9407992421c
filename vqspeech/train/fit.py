"""The fit loop that every training runs: train/loop.Trainer for the codec's objectives, train/prior_loop.PriorTrainer
for the prior over the codes.

    Optimisation  the optimiser and its schedule (linear warmup, cosine decay), each network's gradients clipped on
                  their own, bf16 autocast, the step count and the CPU time it cost; its state for exact resume
    append_row    one row of a run's learning curve (step, CPU-hours, held-out figures)
    RunProgress   a trainer's step and CPU time, read from its Optimisation
    Every         periodic work (logging, validation, checkpoints) after the steps it names
    fit           steps until the last, CPU time counted for training only

What a run trains, on which data and what it checkpoints beyond this stay with the run.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


def append_row(path: Path, step: int, cpu_seconds: float, values: dict[str, float], digits: int = 5) -> None:
    """One row of a run's learning curve (step, CPU-hours, then `values`), appended to the CSV at `path`; the
    header is written with the first row."""
    row = {"step": step, "cpu_hours": round(cpu_seconds / 3600, 4), **{k: round(v, digits) for k, v in values.items()}}
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def lr_lambda(config) -> Callable[[int], float]:
    """Linear warmup, then cosine decay from lr to lr_min at the last step (values fixed at creation). `config`: any
    config with a `train` part holding lr, lr_min, warmup_steps and steps (Config, PriorConfig)."""
    lr, lr_min, warmup, total = config.train.lr, config.train.lr_min, config.train.warmup_steps, config.train.steps
    floor = lr_min / lr

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


class Optimisation:
    """`optimizer` (a torch.optim class, given lr=train.lr and `options`) over `params`, stepped on the lr_lambda
    schedule; the gradients of each module of `clipped` ({metric prefix: module}) clipped to train.grad_clip on their
    own, so that one network (the model, an adversary) cannot take another's budget; autocast to bfloat16 on
    `device_type` when `bf16`. `step` and `cpu_seconds` are the run's progress, saved and restored with the rest."""

    def __init__(self, config, params: Iterable[nn.Parameter], clipped: dict[str, nn.Module], *, device_type: str = "cpu",
                 bf16: bool = False, optimizer: type[torch.optim.Optimizer] = torch.optim.Adam, **options):
        self.optimizer = optimizer(params, lr=config.train.lr, **options)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(config))
        self.clipped, self.train = clipped, config.train  # grad_clip read at each step, as the config says then
        self.device_type, self.bf16 = device_type, bf16
        self.step, self.cpu_seconds = 0, 0.0

    def autocast(self):
        return torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.bf16)

    def update(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One optimiser step on the sum of `losses` -> {"train/<prefix>grad_norm": each module's norm before clipping}."""
        loss = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norms = {}
        for name, module in self.clipped.items():
            trainable = [p for p in module.parameters() if p.requires_grad]
            norms[f"train/{name}grad_norm"] = torch.nn.utils.clip_grad_norm_(trainable, self.train.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return norms

    def state_dict(self) -> dict:
        """The checkpoint's entries for it (the same keys that checkpoints have always had)."""
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "step": self.step,
                "cpu_seconds": self.cpu_seconds}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.cpu_seconds = int(state["step"]), float(state["cpu_seconds"])


class RunProgress:
    """A trainer's `step` and `cpu_seconds`, read from the Optimisation it holds as `optimisation`."""

    optimisation: Optimisation

    @property
    def step(self) -> int:
        return self.optimisation.step

    @property
    def cpu_seconds(self) -> float:
        return self.optimisation.cpu_seconds


@dataclass
class Every:
    """`action()` after each step that is a multiple of `steps` (0: never), and after the last step if `at_end`."""

    steps: int
    action: Callable[[], None]
    at_end: bool = False


def fit(optimisation: Optimisation, steps: int, train_step: Callable[[], None], every: list[Every] = (),
        processes: int = 1) -> None:
    """Call `train_step` (one batch: forward, then optimisation.update) until optimisation.step reaches `steps`.

    The CPU time of this process, times `processes` (a distributed run's, all alike), is the budget that learning is
    measured against: it goes to optimisation.cpu_seconds, and what `every` does after a step (validation, saving)
    is not counted."""
    start = time.process_time()
    while optimisation.step < steps:
        train_step()
        optimisation.step += 1
        now = time.process_time()
        optimisation.cpu_seconds += (now - start) * processes
        for e in every:
            if (e.steps and optimisation.step % e.steps == 0) or (e.at_end and optimisation.step == steps):
                e.action()
        start = time.process_time()
