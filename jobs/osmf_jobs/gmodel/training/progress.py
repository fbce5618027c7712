"""Training progress through the job context: step, total, smoothed loss, learning rate, ETA."""

from __future__ import annotations

from typing import Any


class ProgressReporter:
    """Writes step/total/loss/ETA through the job context; the ETA counts only this process's steps,
    so a resumed run does not look faster than it is."""

    def __init__(self, ctx: Any, start_step: int, label: str = ""):
        import time

        self.ctx, self.start_step, self.label = ctx, start_step, label
        self.clock = time.monotonic
        self.started = self.clock()
        self.ema: float | None = None

    def __call__(self, step: int, total: int, loss: float, lr: float, stats: dict[str, float] | None = None, force: bool = False) -> None:
        self.ema = loss if self.ema is None else 0.9 * self.ema + 0.1 * loss
        done_here = step - self.start_step
        if done_here > 0:
            # The runtime's ETA is elapsed/current × remaining from its own start; shift that start so
            # elapsed/current equals this process's rate per step.
            rate = (self.clock() - self.started) / done_here
            self.ctx._progress_started = self.clock() - rate * step
        metrics = {"loss": self.ema, "lr": lr} | {k: float(v) for k, v in (stats or {}).items()}
        self.ctx.progress(step, total, metrics=metrics, force=force or step == total)
