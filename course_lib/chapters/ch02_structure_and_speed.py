"""Chapter 2's experiment: remove whole units at several keep ratios, fine-tune, shrink, and time.

The pieces are methods of :mod:`course_lib.pruning` (unit masks, fine-tuning,
surgery) and the timing rule of :mod:`course_lib.costs`; this module puts
them together into the chapter's table of accuracy, size and measured speed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from course_lib.cache import cached_run, weights_digest
from course_lib.costs import compare_latency, count_parameters, layer_costs
from course_lib.data import DataSplits
from course_lib.devices import model_device
from course_lib.pruning.dependency import prune_channels
from course_lib.pruning.procedures import MaskFn, finetune, prune_and_finetune
from course_lib.pruning.surgery import shrink
from course_lib.training import TrainConfig, evaluate


def structured_sweep(model: nn.Module, data: DataSplits, keep_ratios: Sequence[float], make_masks: MaskFn,
                     config: TrainConfig, latency_rounds: int = 7, batch_size: int = 256,
                     progress: bool = True, speedup_bars: Mapping[float, float] | None = None,
                     ) -> tuple[pd.DataFrame, dict[float, nn.Module]]:
    """Prune whole units to each keep ratio, fine-tune, remove them physically, and measure.

    Returns a table with one row per keep ratio (1.0 is the dense model) and
    the shrunk models by keep ratio. Columns: parameters, MACs per image,
    validation and test accuracy, median latency at ``batch_size``, speed-up
    (with the spread of its rounds, ``speedup_low``/``speedup_high``; see
    :func:`~course_lib.costs.compare_latency`, which ``speedup_bars`` such as
    ``{0.5: 1.3}`` pass to as ``until_decided``) and MAC reduction against
    the dense model, and ``max_output_diff``: the
    largest difference between the masked and the shrunk network's outputs
    on validation images (surgery must not change what the network computes).

    Devices: fine-tuning runs where :func:`~course_lib.training.train` puts it
    (the fastest device), and ``max_output_diff`` is computed there. Then each
    shrunk model is moved to the **dense model's device**, where all of them
    are timed together with the dense model (a speed-up is only meaningful on
    one device) and where they are returned. To time on the CPU, pass a dense
    model that is on the CPU.
    """

    device = model_device(model)
    dense_costs = layer_costs(model)
    rows, small_models = [], {}
    probe = data.val.tensors[0][:256]
    for keep in keep_ratios:
        if keep == 1.0:
            small, diff = model, 0.0
        else:
            masked = prune_and_finetune(model, data, 1.0 - keep, make_masks, config, progress=progress, cached=True).model
            small = shrink(masked)
            x = probe.to(model_device(masked))  # the inputs follow the model
            with torch.no_grad():
                diff = float((small(x) - masked(x)).abs().max())
            small = small.to(device)
        costs = layer_costs(small)
        rows.append({"keep_ratio": keep, "parameters": count_parameters(small), "MACs": int(costs.macs.sum()),
                     "val_acc": evaluate(small, data.val), "test_acc": evaluate(small, data.test),
                     "MAC_reduction": dense_costs.macs.sum() / costs.macs.sum(), "max_output_diff": diff})
        small_models[keep] = small
    # All latencies in alternating rounds on the dense model's device, against the dense model measured alongside.
    latency = compare_latency({"dense": model, **{str(k): m for k, m in small_models.items()}}, batch_size,
                              rounds=latency_rounds,
                              until_decided={str(k): bar for k, bar in (speedup_bars or {}).items()})
    for row in rows:
        measured = latency.loc[str(row["keep_ratio"])]
        row.update(latency_ms=measured.latency_ms, speedup=measured.speedup, speedup_low=measured.speedup_low,
                   speedup_high=measured.speedup_high)
    return pd.DataFrame(rows).set_index("keep_ratio"), small_models


def pruned_resnet(resnet: nn.Module, data: DataSplits, config: TrainConfig, keep_ratio: float = 0.5,
                  progress: bool = True) -> tuple[nn.Module, float]:
    """Section 6's network, through the run cache: ``resnet`` with ``keep_ratio`` of the channels of every coupled
    group removed (:func:`~course_lib.pruning.dependency.prune_channels`), then fine-tuned with ``config``.

    Returns the fine-tuned smaller network (on the CPU, in eval mode) and its validation accuracy right after
    pruning, before fine-tuning. The channels removed follow from the weights, so the cache keeps only the
    fine-tuned weights and prunes again to rebuild the network they fit.
    """
    def compute() -> dict[str, object]:
        small = prune_channels(resnet, keep_ratio=keep_ratio)
        before = evaluate(small, data.val)
        finetune(small, data, config, progress=progress, desc="fine-tuning the pruned ResNet")
        return {"state": small.cpu().state_dict(), "before": before}

    saved = cached_run("ch2-pruned-resnet", {"resnet": weights_digest(resnet), "data": data.key(), "config": config,
                                             "keep_ratio": keep_ratio}, compute)
    small = prune_channels(resnet, keep_ratio=keep_ratio)
    small.load_state_dict(saved["state"])
    return small.cpu().eval(), saved["before"]


def beyond_timing_spread(latency: pd.DataFrame, control: str, names: Sequence[str]) -> str:
    """Lines saying whether each of ``names`` ran at another speed than the reference, beyond the timing's noise.

    ``latency`` is :func:`course_lib.costs.compare_latency`'s table, and ``control`` a row that times the reference
    network a second time: its speed-up is 1x up to the timing's own bias and spread. A network whose rounds' middle
    half (``speedup_low``-``speedup_high``) overlaps the control's runs at the reference's speed as far as this timing
    can tell. With two names, a last line says whether they differ from each other by more than that spread.
    """
    low, high = latency.loc[control, ["speedup_low", "speedup_high"]]
    lines = [f"{control}: {latency.loc[control, 'speedup']:.3f}x ({low:.3f}-{high:.3f}): the timing's own spread"]
    for name in names:
        row = latency.loc[name]
        verdict = ("faster than the reference beyond the timing's spread" if row.speedup_low > high
                   else "slower than the reference beyond the timing's spread" if row.speedup_high < low
                   else "within the timing's spread: the reference's speed")
        lines.append(f"{name}: {row.speedup:.3f}x ({row.speedup_low:.3f}-{row.speedup_high:.3f}) -> {verdict}")
    if len(names) == 2:
        a, b = (latency.loc[name] for name in names)
        apart = (a.speedup_high < b.speedup_low or b.speedup_high < a.speedup_low) and abs(a.speedup - b.speedup) > high - low
        lines.append(f"{names[0]} against {names[1]}: {a.speedup:.3f}x against {b.speedup:.3f}x -> "
                     + ("apart beyond the timing's spread" if apart else "not apart beyond the timing's spread"))
    return "\n".join(lines)
