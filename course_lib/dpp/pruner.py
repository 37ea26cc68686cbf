"""DPP as a training hook: attach learned k-of-n masks, anneal the temperature, regularise, freeze.

One :class:`DPP` hook does the whole method inside the course's one training loop:

* ``on_start``: a :class:`~course_lib.dpp.masks.DPPMask` on every prunable
  weight, keeping ``k = round((1 - sparsity) * n)`` of every row of n;
* ``param_groups``: the logits get their own learning rate;
* ``before_forward``: the temperature follows a linear schedule from
  ``temperatures[0]`` to ``temperatures[1]`` over the run, driven by the
  fraction of training done (clamped to [0, 1], so it can never run past its
  end - the reference code's step counter could go negative);
* ``extra_loss``: ``entropy * mean over rows of H(softmax(logits_row))``,
  the softmax taken over each row's n entries (the reference code took it over
  the wrong axis), which pushes every row towards a confident choice.

The weights are *not* re-zeroed while the masks are sampled: a weight left out
of this step's sample may be in the next one. After training,
:func:`freeze` replaces every learned mask by its deterministic top-k as an
ordinary fixed mask, so fine-tuning, cost tables and chapter 2's surgery work
on the result as on any pruned network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn

from course_lib.dpp.masks import DPPMask, Granularity, SharedUnitMask, rows_layout
from course_lib.dpp.metrics import confidence_and_diversity
from course_lib.data import DataSplits
from course_lib.masks import apply_masks, get_masks, mask_layers, remove_masks
from course_lib.pruning.selection import following_batchnorm, keep_per_row, unit_masks
from course_lib.masks import check_sparsity, prunable_weights
from course_lib.quantization import add_fake_quantization
from course_lib.training import TrainConfig, recalibrate_batchnorm, steps_per_epoch, train
from course_lib.training.hooks import Hook, TrainContext


def dpp_masks(model: nn.Module) -> dict[str, DPPMask]:
    """The learned masks of ``model``, by weight name."""
    return {name: m for name, m in mask_layers(model).items() if isinstance(m, DPPMask)}


class DPP(Hook):
    """Dynamic probabilistic pruning of every prunable weight (except ``exclude``) during training.

    Args:
        sparsity: the share of every row removed (exactly, up to rounding k).
        granularity: ``"weight"``, ``"kernel"`` or ``"feature_map"``.
        tile: groups of this many weights per row, k kept in each (weight granularity).
        temperatures: the relaxation's temperature at the start and at the end (linear in between).
        logits_lr: the learning rate of the logits' parameter group.
        entropy: strength of the entropy regulariser on the rows' softmax(logits).
        exclude: layers left dense (e.g. the classifier for feature-map granularity).
        bits: also fake-quantize every masked weight to this many bits (joint
            pruning and quantization; ``None``: float32).
        record_every: every this many steps (and at the start, at steps 1, 2, 4, 8, ... before the first of
            these, and at the end), append each layer's confidence and diversity and the temperature to
            :attr:`trace` (``None``: record nothing). The early doubling steps are there because a mask can
            commit within its first few dozen steps: a trace that looks first after half an epoch can only say
            "decided by then".
        seed: seeds the logits and the noise.

    Attributes:
        masks: the masks this hook attached, by weight name (set in ``on_start``).
        trace: ``{"step", "temperature", "layer", "confidence", "diversity"}``
            records (see :mod:`course_lib.dpp.metrics`).
    """

    def __init__(self, sparsity: float, granularity: Granularity = "weight", tile: int | None = None,
                 temperatures: tuple[float, float] = (5.0, 0.5), logits_lr: float = 1e-2, entropy: float = 0.0,
                 exclude: Sequence[str] = (), bits: int | None = None, record_every: int | None = None,
                 seed: int = 0) -> None:
        check_sparsity(sparsity)
        if record_every is not None and record_every < 1:
            raise ValueError(f"record_every must be a positive number of steps or None, got {record_every}.")
        if min(temperatures) <= 0:
            raise ValueError(f"temperatures must be positive, got {temperatures}.")
        if logits_lr <= 0 or entropy < 0:
            raise ValueError(f"need logits_lr > 0 and entropy >= 0, got {logits_lr} and {entropy}.")
        self.sparsity, self.granularity, self.tile = sparsity, granularity, tile
        self.temperatures, self.logits_lr, self.entropy = temperatures, logits_lr, entropy
        self.exclude, self.bits, self.record_every, self.seed = tuple(exclude), bits, record_every, seed
        self.masks: dict[str, DPPMask] = {}
        self.trace: list[dict[str, float | int | str]] = []

    def on_start(self, ctx: TrainContext) -> None:
        self.masks, self.trace = {}, []
        for i, (name, layer) in enumerate(prunable_weights(ctx.model, self.exclude).items()):
            layout = rows_layout(layer.weight.shape, self.granularity, self.tile)
            mask = DPPMask(layer.weight.shape, keep_per_row(self.sparsity, layout[-1]), self.granularity, self.tile,
                           seed=self.seed * 1000 + i).to(layer.weight.device)
            parametrize.register_parametrization(layer, "weight", mask)
            self.masks[name] = mask
            if self.granularity == "feature_map":
                self._switch_unit_parameters(ctx.model, name.removesuffix(".weight"), mask)
        if self.bits is not None:  # after the masks: the masked weight is what gets rounded
            add_fake_quantization(ctx.model, self.bits, self.exclude)
        self.record(0)

    @staticmethod
    def _switch_unit_parameters(model: nn.Module, layer_name: str, mask: DPPMask) -> None:
        """The layer's bias and its BatchNorm's scale and shift follow the sampled units (see SharedUnitMask)."""
        modules = dict(model.named_modules())
        owners = [modules[layer_name]]
        if layer_name in following_batchnorm(model):
            owners.append(modules[following_batchnorm(model)[layer_name]])
        for owner in owners:
            for param in ("weight", "bias") if owner is not modules[layer_name] else ("bias",):
                if getattr(owner, param, None) is not None:
                    parametrize.register_parametrization(owner, param, SharedUnitMask(mask))

    def param_groups(self, ctx: TrainContext) -> list[dict[str, Any]]:
        return [{"params": [m.logits for m in self.masks.values()], "lr": self.logits_lr, "weight_decay": 0.0}]

    def temperature(self, progress: float) -> float:
        """The temperature after ``progress`` (a fraction in [0, 1]) of training."""
        start, end = self.temperatures
        return start + (end - start) * min(max(progress, 0.0), 1.0)

    def before_forward(self, ctx: TrainContext) -> None:
        for mask in self.masks.values():
            mask.temperature = self.temperature(ctx.progress)

    def extra_loss(self, ctx: TrainContext) -> torch.Tensor | None:
        if self.entropy == 0.0:
            return None
        return self.entropy * torch.stack([row_entropy(m.logits).mean() for m in self.masks.values()]).mean()

    def records_at(self, step: int, total_steps: int) -> bool:
        """Does the trace record after ``step``? Every ``record_every`` steps, the last step, and the powers of
        two before the first regular record (1, 2, 4, ...): a fine look at the start, where masks commit."""
        if self.record_every is None:
            return False
        early = step < self.record_every and step & (step - 1) == 0  # a power of two (step >= 1)
        return early or step % self.record_every == 0 or step == total_steps

    def after_step(self, ctx: TrainContext) -> None:
        if self.records_at(ctx.step, ctx.total_steps):
            self.record(ctx.step, self.temperature(ctx.progress))

    def record(self, step: int, temperature: float | None = None) -> None:
        """Append every layer's confidence and diversity now (if this hook records at all)."""
        if self.record_every is None:
            return
        temperature = self.temperatures[0] if temperature is None else temperature
        for name, mask in self.masks.items():
            if mask.k == mask.logits.shape[-1]:
                continue  # keeps every entry (a convolution with one input channel, by kernels): nothing to measure
            sure, diverse = confidence_and_diversity(mask.logits, mask.k)
            self.trace.append({"step": step, "temperature": temperature, "layer": name.removesuffix(".weight"),
                               "confidence": sure, "diversity": diverse})


def row_entropy(logits: torch.Tensor) -> torch.Tensor:
    """The entropy (nats) of softmax over the last dimension, one value per row."""
    log_p = torch.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


@torch.no_grad()
def freeze(model: nn.Module) -> None:
    """Replace every learned mask by its deterministic top-k, as a fixed mask (in place).

    Feature-map masks remove whole units: their bias and the BatchNorm that
    follows go too (:func:`~course_lib.pruning.selection.unit_masks`), so
    chapter 2's :func:`~course_lib.pruning.surgery.shrink` can cut them out.
    """
    learned = dpp_masks(model)
    if not learned:
        raise ValueError("The model carries no DPP masks: train it with the DPP hook first.")
    if len(mask_layers(model)) != len(learned):
        raise ValueError(f"{sorted(set(mask_layers(model)) - set(learned))} carry other masks as well; "
                         "DPP prunes a network on its own.")
    units = {name.removesuffix(".weight"): m.hard_mask().flatten(1).any(dim=1)
             for name, m in learned.items() if m.granularity == "feature_map"}
    fixed = {name: m.hard_mask().clone() for name, m in learned.items() if m.granularity != "feature_map"}
    for module in model.modules():  # the per-unit parameters that followed a sampled mask: back to plain ones
        for param, stack in list(getattr(module, "parametrizations", {}).items()):
            if any(isinstance(p, SharedUnitMask) for p in stack):
                parametrize.remove_parametrizations(module, param, leave_parametrized=False)
    remove_masks(model)  # each weight keeps its values under its top-k, zeros elsewhere
    apply_masks(model, fixed)
    if units:
        apply_masks(model, unit_masks(model, units))



# The course's DPP settings, chosen on validation in chapter 7 and used by every chapter that trains DPP.
LOGITS_LR = 0.3  # the logits' own learning rate (Adam); chosen on validation from 0.3 and 1.0
TEMPERATURES = (2.0, 0.1)  # linear annealing; chosen on validation against the authors' (5.0, 0.5)
RECORDS_PER_EPOCH = 2  # confidence and diversity are recorded this often


def dpp_hook(sparsity: float, data: DataSplits, config: TrainConfig, seed: int, exclude: Sequence[str],
             granularity: Granularity = "weight", tile: int | None = None, bits: int | None = None,
             logits_lr: float = LOGITS_LR) -> DPP:
    """A :class:`DPP` hook with the course's settings, recording confidence and diversity ``RECORDS_PER_EPOCH``
    times per epoch (and at steps 1, 2, 4, ... before the first of those records). ``exclude`` names the layers
    left dense (e.g. :data:`course_lib.models.LENET_CLASSIFIER`); ``logits_lr`` sets how fast the masks can commit
    (chapter 7's regime experiment varies it)."""
    per_epoch = steps_per_epoch(len(data.train), config.batch_size)
    return DPP(sparsity, granularity, tile, temperatures=TEMPERATURES, logits_lr=logits_lr, exclude=exclude,
               bits=bits, record_every=max(1, per_epoch // RECORDS_PER_EPOCH), seed=seed)


def train_dpp(model: nn.Module, data: DataSplits, config: TrainConfig, hook: DPP,
              extra_hooks: Sequence[Hook] = ()) -> nn.Module:
    """Train ``model`` with ``hook`` (masks and weights together), then fix each mask at its top-k (in place).

    The sampled masks left BatchNorm statistics that belong to no single
    network, so they are re-estimated for the fixed one.
    """
    train(model, data, config, hooks=[hook, *extra_hooks], progress=False)
    freeze(model)
    recalibrate_batchnorm(model, data.train)
    return model


def exactly_k_per_row(model: nn.Module, hook: DPP) -> bool:
    """Does every row of every frozen mask keep exactly the k the hook asked for (every group, with tiles)?"""
    masks = get_masks(model)
    for name, learned in hook.masks.items():
        if learned.granularity == "feature_map":
            kept_units = int(masks[name].flatten(1).any(dim=1).sum())
            if kept_units != learned.k:
                return False
            continue
        rows = masks[name] if learned.granularity == "weight" else masks[name][:, :, 0, 0]
        groups = rows.reshape(rows.shape[0], -1, learned.tile or rows[0].numel())
        if not bool((groups.sum(dim=-1) == learned.k).all()):
            return False
    return True
