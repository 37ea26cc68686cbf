"""Lottery tickets: iterative magnitude pruning (IMP) with rewinding, its controls, and three ways to retrain.

The lottery-ticket hypothesis (Frankle & Carbin 2019): a dense network
contains a sparse subnetwork that, trained *from the same initial weights*,
matches the dense network. IMP finds it:

1. train the network from its initialization theta_0;
2. prune a fraction ``rate`` of the surviving weights of every layer by
   magnitude (the output layer at half that rate);
3. **rewind** the survivors to theta_0 (or, "late rewinding", to their values
   theta_k after k epochs: Frankle et al. 2020) and train again;
4. repeat.

Two controls tell whether the *initialization* matters: the same mask with a
fresh random initialization, and a random mask with the same number of weights
per layer. Renda et al. (2020) compare three ways to retrain after pruning:
fine-tuning at the final learning rate, weight rewinding, and learning-rate
rewinding (keep the weights, replay the learning-rate schedule).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn

from course_lib.data import DataSplits
from course_lib.masks import Masks, mask_sparsity, unmasked_copy
from course_lib.models import build_model
from course_lib.pruning.selection import output_layer, random_masks_like, unstructured_masks
from course_lib.pruning.procedures import train_masked
from course_lib.profiles import derive_seed
from course_lib.training import History, TrainConfig, steps_per_epoch, train
from course_lib.training.config import STEP_DECAY

Retraining = Literal["fine-tune", "weight rewinding", "LR rewinding"]


@dataclass
class Ticket:
    """One round of IMP: its masks and the network trained with them."""

    round: int
    masks: Masks
    model: nn.Module
    history: History

    @property
    def density(self) -> float:
        """Fraction of the prunable weights that survive (1.0 for the dense round 0)."""
        return 1.0 - mask_sparsity(self.masks) if self.masks else 1.0


def imp_round_masks(model: nn.Module, round_: int, rate: float = 0.2, output_rate_factor: float = 0.5) -> Masks:
    """Masks after ``round_`` rounds of pruning ``rate`` of each layer's survivors (output layer at a lower rate).

    After r rounds a hidden layer keeps (1 - rate)^r of its weights and the
    output layer (1 - rate * output_rate_factor)^r. Only survivors of
    ``model``'s current masks are ranked, by magnitude.
    """
    if not 0 < rate < 1 or round_ < 1:
        raise ValueError(f"need 0 < rate < 1 and round_ >= 1, got rate={rate}, round_={round_}.")
    hidden = 1.0 - (1.0 - rate) ** round_
    output = 1.0 - (1.0 - rate * output_rate_factor) ** round_
    return unstructured_masks(model, hidden, scope="local", rate_multipliers={output_layer(model): output / hidden})


def weights_after(model_name: str, data: DataSplits, config: TrainConfig, epochs: int,
                  progress: bool = True) -> dict[str, torch.Tensor]:
    """theta_k: the weights after the first ``epochs`` epochs of the dense run with ``config``.

    Same seed, same data order, same learning rates as the full run, so these
    are exactly the weights that run passes through (``epochs=0``: theta_0).
    """
    model = build_model(model_name, seed=config.seed)
    if epochs > 0:
        train(model, data, config, stop_epoch=epochs, progress=progress, desc=f"dense, first {epochs} epoch(s)")
    return copy.deepcopy(model.state_dict())


def remember_at_epoch(state: dict[str, torch.Tensor], epoch: int, train_size: int,
                       batch_size: int) -> Callable[[nn.Module, int], None]:
    """A step hook that copies the model's weights into ``state`` once ``epoch`` epochs have been trained."""
    step_to_keep = epoch * steps_per_epoch(train_size, batch_size)

    def remember(model: nn.Module, step: int) -> None:
        if step == step_to_keep:
            state.update(copy.deepcopy(model.state_dict()))
    return remember


def iterative_magnitude_pruning(model_name: str, data: DataSplits, config: TrainConfig, rounds: int,
                                rate: float = 0.2, rewind_epoch: int = 0, eval_every: int | None = None,
                                progress: bool = True) -> tuple[list[Ticket], dict[str, torch.Tensor]]:
    """Run IMP with rewinding for ``rounds`` rounds; return the tickets (round 0 = dense) and the rewind weights.

    Every round trains with ``config``; with ``rewind_epoch = k > 0`` the
    survivors go back to their values after k epochs of the dense run, and
    training replays epochs k..end of the schedule (late rewinding).
    """
    if not 0 <= rewind_epoch < config.epochs:
        raise ValueError(f"rewind_epoch must be in [0, {config.epochs}), got {rewind_epoch}.")
    dense = build_model(model_name, seed=config.seed)
    snapshot: dict[str, torch.Tensor] = copy.deepcopy(dense.state_dict())
    remember = remember_at_epoch(snapshot, rewind_epoch, len(data.train), config.batch_size)

    history = train(dense, data, config, hooks=[remember] if rewind_epoch else [], eval_every=eval_every,
                    progress=progress, desc="round 0 (dense)")
    tickets = [Ticket(0, {}, dense, history)]
    for r in range(1, rounds + 1):
        masks = imp_round_masks(tickets[-1].model, r, rate)
        ticket = build_model(model_name, seed=config.seed)
        ticket.load_state_dict(snapshot)
        density = 1.0 - mask_sparsity(masks)
        history = train_masked(ticket, masks, data, config, start_epoch=rewind_epoch, eval_every=eval_every,
                               progress=progress, desc=f"round {r}: {density:.1%} of weights")
        tickets.append(Ticket(r, masks, ticket, history))
    return tickets, snapshot


def random_reinit_control(model_name: str, ticket: Ticket, data: DataSplits, config: TrainConfig,
                          eval_every: int | None = None,
                          progress: bool = True) -> tuple[nn.Module, History]:
    """The ticket's mask on a *fresh* random initialization, trained the same way."""
    model = build_model(model_name, seed=derive_seed(config.seed, "fresh init"))
    history = train_masked(model, ticket.masks, data, config, eval_every=eval_every, progress=progress,
                           desc=f"round {ticket.round}: random re-init")
    return model, history


def random_mask_control(model_name: str, ticket: Ticket, init_state: dict[str, torch.Tensor], data: DataSplits,
                        config: TrainConfig, seed: int = 0, eval_every: int | None = None,
                        progress: bool = True) -> tuple[nn.Module, History]:
    """A random mask with the ticket's per-layer counts, on the ticket's initialization."""
    model = build_model(model_name, seed=config.seed)
    model.load_state_dict(init_state)
    history = train_masked(model, random_masks_like(ticket.masks, seed), data, config, eval_every=eval_every,
                           progress=progress, desc=f"round {ticket.round}: random mask")
    return model, history


def retrain_after_pruning(method: Retraining, trained: nn.Module, masks: Masks, rewind_state: dict[str, torch.Tensor],
                          data: DataSplits, config: TrainConfig, rewind_epoch: int,
                          progress: bool = True) -> tuple[nn.Module, History]:
    """Renda et al. (2020): retrain a pruned network for ``epochs - rewind_epoch`` epochs, one of three ways.

    * ``"fine-tune"``: keep the trained weights, train at the schedule's *final*
      learning rate (constant);
    * ``"weight rewinding"``: survivors back to ``rewind_state`` (theta_k),
      replay the schedule from epoch k;
    * ``"LR rewinding"``: keep the trained weights, replay the schedule from epoch k.
    """
    if method not in ("fine-tune", "weight rewinding", "LR rewinding"):
        raise ValueError(f"method must be 'fine-tune', 'weight rewinding' or 'LR rewinding', got {method!r}.")
    if method == "weight rewinding":
        model = unmasked_copy(trained)
        model.load_state_dict(rewind_state)
    else:
        model = copy.deepcopy(trained)
    if method == "fine-tune":
        final_lr = final_learning_rate(config)
        ft = replace(config, epochs=config.epochs - rewind_epoch, lr=final_lr, schedule="constant")
        return model, train_masked(model, masks, data, ft, progress=progress, desc="fine-tune")
    return model, train_masked(model, masks, data, config, start_epoch=rewind_epoch, progress=progress, desc=method)


def final_learning_rate(config: TrainConfig) -> float:
    """The learning rate at the end of ``config``'s schedule (what fine-tuning uses)."""
    if config.schedule == "cosine":
        raise ValueError("A cosine schedule ends at learning rate 0, so 'fine-tuning at the final learning rate' "
                         "would not train at all. Use schedule='step' (as Renda et al.) or 'constant'.")
    return config.lr * (STEP_DECAY ** 2 if config.schedule == "step" else 1.0)
