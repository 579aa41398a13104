"""An exponential moving average of the generator: the weights that are sampled, judged and served.

A GAN generator's weights wander from step to step as it chases the discriminator; their moving
average makes better digits sooner (lower Frechet distance at the same step), at no training cost
beyond one fused lerp per generator step. Batch-norm statistics are averaged too, so the average
is a consistent network in eval mode. The decay warms up as min(decay, (1 + t) / (10 + t)): early
steps' weights, which are far from anything useful, fade out quickly instead of lingering.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


class GeneratorEMA:
    """The moving average of ``generator``: ``update()`` after every generator step."""

    def __init__(self, generator: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.steps = 0
        self.averaged = AveragedModel(generator, multi_avg_fn=self._blend, use_buffers=True)
        self.averaged.eval()

    @property
    def module(self) -> nn.Module:
        """The averaged generator: same class and layers as the trained one."""
        module: nn.Module = self.averaged.module
        return module

    @torch.no_grad()
    def _blend(
        self,
        averaged: list[torch.Tensor] | tuple[torch.Tensor, ...],
        current: list[torch.Tensor] | tuple[torch.Tensor, ...],
        _count: torch.Tensor | int,
    ) -> None:
        if not averaged[0].is_floating_point():  # batch norm's num_batches_tracked
            torch._foreach_copy_(averaged, current)
            return
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        torch._foreach_lerp_(averaged, current, 1.0 - decay)

    def update(self, generator: nn.Module) -> None:
        self.averaged.update_parameters(generator)
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "steps": self.steps, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.steps = int(state["steps"])
        self.averaged.n_averaged.fill_(self.steps)
