"""What the Hugging Face trainer calls back into: progress, cancellation, early stopping on the dev
split (keeping the best weights), and the dev-split evaluator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adaptrank.core.progress import StepProgress


class Monitor:
    """Progress, cancellation and early stopping as one ``TrainerCallback``; keeps the best
    dev weights in memory and restores them at the end."""

    def __init__(self, model, metric_key: str, patience: int, report: StepProgress, check: Callable[[], None]) -> None:
        from transformers import TrainerCallback

        monitor = self

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                check()
                monitor.step = state.global_step
                monitor.max_steps = state.max_steps
                report(state.global_step, state.max_steps, monitor.message())

            def on_log(self, args, state, control, logs=None, **kw):
                if logs and "loss" in logs:
                    monitor.loss = float(logs["loss"])
                    monitor.history.append({"step": state.global_step, "loss": monitor.loss})

            def on_evaluate(self, args, state, control, metrics=None, **kw):
                value = (metrics or {}).get(monitor.metric_key)
                if value is not None and monitor.observe(state.global_step, float(value)):
                    control.should_training_stop = True
                report(state.global_step, state.max_steps or None, monitor.message())

        self.callback = Callback()
        self.model = model
        self.metric_key = metric_key
        self.patience = patience
        self.step = 0
        self.max_steps = 0
        self.loss: float | None = None
        self.dev: float | None = None
        self.best: float | None = None
        self.best_step: int | None = None
        self.best_state: dict | None = None
        self.bad = 0
        self.history: list[dict[str, float]] = []

    def observe(self, step: int, value: float) -> bool:
        """Record a dev evaluation; keep the best weights; True when patience has run out."""
        self.dev = value
        self.history.append({"step": step, "dev": value})
        if self.best is None or value > self.best + 1e-9:
            self.best, self.best_step, self.bad = value, step, 0
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            return False
        self.bad += 1
        return bool(self.patience and self.bad >= self.patience)

    def message(self) -> str:
        parts = [f"step {self.step}/{self.max_steps}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.dev is not None:
            parts.append(f"dev {self.metric_key.removeprefix('eval_dev_')} {self.dev:.4f}")
        return " ".join(parts)

    def restore_best(self) -> None:
        if self.best_state is not None and self.best_step != self.step:
            self.model.load_state_dict(self.best_state)


def dev_evaluator(score_groups: Callable[[Any], dict[str, float]], metric: str):
    """A sentence-transformers evaluator that ranks the dev groups with the model in training."""
    from sentence_transformers.base.evaluation import BaseEvaluator

    class DevGroups(BaseEvaluator):
        def __init__(self) -> None:
            super().__init__()
            self.primary_metric = metric
            self.greater_is_better = True

        def __call__(self, model, output_path=None, epoch=-1, steps=-1):
            was_training = model.training
            model.eval()
            try:
                return score_groups(model)
            finally:
                model.train(was_training)

    return DevGroups()
