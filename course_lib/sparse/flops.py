"""Training FLOPs: what a run of dense, pruned or sparse training costs to compute.

Sparse training is sold on its *training* cost: a network that is sparse from
the first step never pays for the dense one. The accounting of Evci et al.
(2020, appendix H), which we follow, counts the prunable layers only (biases,
activations and the optimizer are small next to them) and assumes an ideal
sparse kernel that skips zero weights (no CPU or GPU does this for
unstructured sparsity: chapter 2):

* a forward pass costs ``f = 2 * sum_l d_l * MACs_l`` per image (a
  multiply-accumulate is two FLOPs; ``d_l`` is layer ``l``'s density);
* the backward pass costs about two forward passes: one for the gradient
  with respect to the layer's inputs, one for the gradient with respect to
  its weights, so a training step costs ``3 f`` per image;
* RigL's update step needs the gradient of *every* weight, active or not:
  its weight-gradient term is the dense one, ``2 f + f_dense``.

Summed over every step of a run (with each step's densities, as AGP's
change), this gives the training FLOPs that
:class:`course_lib.sparse.tracking.MaskTracker` records.
"""

from __future__ import annotations

from collections.abc import Mapping


def forward_flops(macs: Mapping[str, float], densities: Mapping[str, float] | None = None) -> float:
    """FLOPs of one image's forward pass through the prunable layers.

    Args:
        macs: each layer's *dense* multiply-accumulates per image, e.g.
            ``{"net.fc1": 235200, ...}`` (``layer_costs(model).macs``).
        densities: the fraction of each layer's weights in use; a layer not
            named is dense. ``None``: the dense network.
    """
    densities = densities or {}
    for name, density in densities.items():
        if not 0.0 <= density <= 1.0:
            raise ValueError(f"The density of {name!r} must be in [0, 1], got {density}.")
    return 2.0 * sum(m * densities.get(name, 1.0) for name, m in macs.items())


def training_step_flops(macs: Mapping[str, float], densities: Mapping[str, float] | None = None,
                        dense_weight_gradient: bool = False) -> float:
    """FLOPs of one training step per image: forward, input gradients, weight gradients.

    ``dense_weight_gradient``: the step computes the gradient of every weight
    (RigL's update step), not only of the active ones.
    """
    sparse = forward_flops(macs, densities)
    weight_gradient = forward_flops(macs) if dense_weight_gradient else sparse
    return 2.0 * sparse + weight_gradient
