"""Agreement with the libraries that already do it: torch.ao.pruning and torch.utils.flop_counter.

The course writes its own pruning tools so that students can read them. These
tests check them against PyTorch's own implementations of the same ideas, and
where the *definitions* differ (not only the code), they say exactly how, and
assert what still agrees. (The agreement with ``torch.nn.utils.prune`` lives in
``tests/test_pruning.py``.)

1. The AGP cubic schedule vs ``torch.ao.pruning.scheduler.CubicSL``.
2. N:M masks vs ``torch.ao.pruning.WeightNormSparsifier``; and N:M on a model
   that is already pruned (only survivors are ranked, nothing grows back).
3. Dense MACs vs ``torch.utils.flop_counter.FlopCounterMode``.
4. One random and one magnitude scorer: pruning at initialization uses the
   same ones as the rest of the course.
"""

import copy

import pytest
import torch
from torch import nn
from torch.ao.pruning import WeightNormSparsifier
from torch.ao.pruning.scheduler.cubic_scheduler import CubicSL
from torch.utils.flop_counter import FlopCounterMode

from course_lib.costs import layer_costs, prunable_layers
from course_lib.masks import apply_masks, get_masks, prunable_weights
from course_lib.models import build_model
from course_lib.pruning import at_init
from course_lib.pruning import selection as P
from course_lib.sparse.schedules import agp_sparsity

# ---------------------------------------------------------------- 1. AGP vs CubicSL
#
# Ours:  s(t) = s_f + (s_i - s_f) * (1 - (t - begin) / (end - begin))^3, held constant outside [begin, end].
# Torch: s(t) = s_f + (s_0 - s_f) * (1 - (t - t_0) / (dt * n))^3, clamped to [s_0, s_f].
# So t_0 = begin_step and the length of the ramp, end - begin, is dt * n: ``delta_t`` (dt, how often
# the sparsifier is asked to update) times ``total_t`` (n, the *number* of updates; not the last step).
# Only the product matters: torch's formula is as continuous in t as ours; neither rounds t to a
# multiple of dt (updating the masks only every dt steps is the training loop's business).

SCHEDULES = [  # (initial, final, begin, end, dt)
    (0.0, 0.9, 0, 100, 1),
    (0.0, 0.5, 10, 60, 5),
    (0.2, 0.98, 7, 107, 10),
    (0.1, 0.9, 0, 30, 3),
]


def _torch_cubic(step, initial, final, begin, end, dt, initially_zero=False):
    n = (end - begin) // dt
    assert dt * n == end - begin, "choose schedules whose ramp is a whole number of updates"
    return CubicSL.sparsity_compute_fn(s_0=initial, s_f=final, t=step, t_0=begin, dt=dt, n=n,
                                       initially_zero=initially_zero)


@pytest.mark.parametrize("initial, final, begin, end, dt", SCHEDULES)
def test_agp_equals_torch_cubic_formula_before_during_and_after_the_ramp(initial, final, begin, end, dt):
    steps = range(begin - 10, end + 11)  # also outside [begin, end]: both hold s_i before and s_f after
    ours = [agp_sparsity(t, final, begin, end, initial) for t in steps]
    theirs = [_torch_cubic(t, initial, final, begin, end, dt) for t in steps]
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert ours[0] == pytest.approx(initial) and ours[-1] == pytest.approx(final)


def test_agp_equals_a_running_torch_cubic_scheduler():
    """The same, through the stateful scheduler as one would use it in a training loop."""
    initial, final, begin, end, dt = 0.1, 0.9, 5, 45, 4
    sparsifier = WeightNormSparsifier(sparsity_level=final)  # CubicSL reads s_f from the sparsifier
    sparsifier.prepare(nn.Sequential(nn.Linear(8, 4)), config=[{"tensor_fqn": "0.weight"}])
    scheduler = CubicSL(sparsifier, init_sl=initial, init_t=begin, delta_t=dt, total_t=(end - begin) // dt)
    for step in range(0, end + 10):  # the constructor already stepped to t = 0
        assert scheduler.get_last_sl()[0] == pytest.approx(agp_sparsity(step, final, begin, end, initial),
                                                           abs=1e-12), step
        sparsifier.step()  # torch wants the sparsifier stepped before its scheduler
        scheduler.step()


def test_where_the_cubic_schedules_differ():
    initial, final, begin, end, dt = 0.2, 0.9, 10, 60, 5
    # total_t is the number of updates, not the end step: reading it as our end_step stretches the ramp.
    wrong = CubicSL.sparsity_compute_fn(s_0=initial, s_f=final, t=35, t_0=begin, dt=1, n=end)
    assert wrong != pytest.approx(agp_sparsity(35, final, begin, end, initial))
    # initially_zero=True: torch reports 0 before t_0, ours the initial sparsity (the same only if it is 0).
    before = begin - 1
    assert _torch_cubic(before, initial, final, begin, end, dt, initially_zero=True) == 0
    assert agp_sparsity(before, final, begin, end, initial) == pytest.approx(initial)
    assert _torch_cubic(before, 0.0, final, begin, end, dt, initially_zero=True) == agp_sparsity(before, final,
                                                                                               begin, end, 0.0)


# ---------------------------------------------------------------- 2. N:M vs WeightNormSparsifier
#
# Same pattern, counted the other way. Ours: ``n_of_m_masks(model, n, m)`` *keeps* n of every m.
# Torch: ``WeightNormSparsifier(sparsity_level=1.0, sparse_block_shape=(1, m), zeros_per_block=m - n)``
# *zeroes* m - n in every block of 1 row x m columns. A Linear weight is (outputs, inputs), so
# torch's blocks are our groups: m consecutive inputs of one output unit. sparsity_level=1.0 means
# "every block is sparse"; each then keeps its n largest by the block norm's per-element term
# (w^2 for the default L2, |w| for L1: the same order as our |w|).
#
# Where they differ:
# * Conv2d: ours groups m input channels at each kernel position; torch's sparsifier handles only
#   2-D weights (it fails on a (O, I, kh, kw) kernel). Seen as the (O*kh*kw, I) matrix, they agree.
# * Inputs not divisible by m: ours refuses; torch pads the last block with NaN, which ranks above
#   every weight, so the zeros of that block all fall on its real weights, and it returns a mask of
#   the padded shape (outputs, inputs rounded up to m), which the layer then cannot use.
# * Ties: ours prunes the lower index first, the rule of the whole selection module; torch.topk
#   leaves the order of equal values unspecified. (Weights drawn at random have no ties.)
# * Masks already on the model: ours ranks only survivors and never regrows a weight; torch ranks
#   the weight values, where a pruned weight is 0 and so goes first, but in a block with fewer than
#   n survivors it "keeps" some zeros. Hence ours == torch's AND the current mask.


def _torch_n_of_m(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """WeightNormSparsifier's N:M mask for a 2-D weight, as a float keep-mask."""
    layer = nn.Sequential(nn.Linear(weight.shape[1], weight.shape[0], bias=False))
    with torch.no_grad():
        layer[0].weight.copy_(weight)
    sparsifier = WeightNormSparsifier(sparsity_level=1.0, sparse_block_shape=(1, m), zeros_per_block=m - n)
    sparsifier.prepare(layer, config=[{"tensor_fqn": "0.weight"}])
    sparsifier.step()
    return layer[0].parametrizations.weight[0].mask.float()


@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (3, 4), (4, 10)])
def test_n_of_m_equals_weight_norm_sparsifier_on_linear_layers(n, m):
    model = build_model("lenet300")  # inputs 784, 300, 100: divisible by 4 and (bar the first) by 10
    layers = {name: layer for name, layer in prunable_layers(model).items() if layer.in_features % m == 0}
    assert layers, "the test needs at least one layer to compare"
    ours = P.n_of_m_masks(model, n, m, exclude=[k for k in prunable_layers(model) if k not in layers])
    for name, layer in layers.items():
        theirs = _torch_n_of_m(layer.weight.detach(), n, m)
        assert torch.equal(ours[f"{name}.weight"], theirs), name
        assert torch.all(theirs.reshape(-1, m).sum(1) == n), "torch also keeps n per group (zeros m - n)"


def test_n_of_m_on_a_convolution_is_torchs_n_of_m_on_its_input_channel_matrix():
    model = build_model("vgg")
    convs = {k: v for k, v in prunable_layers(model).items() if isinstance(v, nn.Conv2d)}
    first = next(iter(convs))  # one input channel: cannot be grouped by 4
    ours = P.n_of_m_masks(model, 2, 4, exclude=[first, *(k for k in prunable_layers(model) if k not in convs)])
    compared = list(convs)[1:]
    assert len(compared) >= 2
    for name in compared:
        w = convs[name].weight.detach()  # (O, I, kh, kw) -> rows (o, y, x), columns: the I input channels
        matrix = w.permute(0, 2, 3, 1).reshape(-1, w.shape[1])
        theirs = _torch_n_of_m(matrix, 2, 4)
        expected = theirs.reshape(w.shape[0], w.shape[2], w.shape[3], w.shape[1]).permute(0, 3, 1, 2)
        assert torch.equal(ours[f"{name}.weight"], expected), name
    sparsifier = WeightNormSparsifier(sparsity_level=1.0, sparse_block_shape=(1, 4), zeros_per_block=2)
    sparsifier.prepare(nn.Sequential(copy.deepcopy(convs[compared[0]])), config=[{"tensor_fqn": "0.weight"}])
    with pytest.raises(RuntimeError):  # torch's sparsifier does not take a 4-D kernel as it is
        sparsifier.step()


def test_n_of_m_with_inputs_not_divisible_by_m_ours_refuses_torch_pads():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 3))
    with pytest.raises(ValueError, match="not divisible by m=4"):
        P.n_of_m_masks(model, 2, 4)
    theirs = _torch_n_of_m(model[0].weight.detach(), 2, 4)
    assert theirs.shape == (3, 12), "torch's mask keeps the padded shape (and then fails the forward pass)"
    assert torch.all(theirs[:, :8].reshape(-1, 4).sum(1) == 2), "the whole groups agree in count"
    assert theirs[:, 8:10].sum() == 0, "the padded last block loses both of its real weights"


def test_n_of_m_ties_prune_the_lower_index_first_as_unstructured_pruning_does():
    model = nn.Sequential(nn.Linear(8, 2, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    assert P.n_of_m_masks(model, 2, 4)["0.weight"].tolist() == [[0, 0, 1, 1, 0, 0, 1, 1]] * 2
    single = nn.Sequential(nn.Linear(4, 1, bias=False))
    with torch.no_grad():
        single[0].weight.fill_(1.0)
    assert P.unstructured_masks(single, 0.5)["0.weight"].tolist() == [[0, 0, 1, 1]]


def test_n_of_m_on_a_pruned_model_ranks_only_survivors_and_regrows_nothing():
    model = nn.Sequential(nn.Linear(8, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[4.0, 3.0, 2.0, 1.0, 5.0, 6.0, 7.0, 8.0]]))
    apply_masks(model, {"0.weight": torch.tensor([[0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]])})
    with torch.no_grad():  # pruned weights with a large stored value must stay pruned all the same
        model[0].parametrizations.weight.original.add_(torch.tensor([[9.0, 9.0, 9.0, 0, 0, 0, 0, 0]]))
    # Group 1 has a single survivor (the 1.0): it keeps just that one. Group 2: the two largest.
    assert P.n_of_m_masks(model, 2, 4)["0.weight"].tolist() == [[0, 0, 0, 1, 0, 0, 1, 1]]


def test_n_of_m_on_a_pruned_model_is_torchs_mask_and_the_current_mask():
    model = build_model("lenet300")
    apply_masks(model, P.unstructured_masks(model, 0.6, criterion="random", scope="local", seed=5))
    current = get_masks(model)
    ours = P.n_of_m_masks(model, 2, 4)
    for name, layer in prunable_layers(model).items():
        key = f"{name}.weight"
        alive = current[key].reshape(-1, 4).sum(1)
        kept = ours[key].reshape(-1, 4).sum(1)
        assert torch.all(ours[key] <= current[key]), f"{key}: a pruned weight came back"
        assert torch.equal(kept, torch.clamp(alive, max=2)), f"{key}: keep min(n, survivors) per group"
        assert (alive < 2).any(), "the test needs groups with fewer than n survivors"
        theirs = _torch_n_of_m(layer.weight.detach(), 2, 4)  # layer.weight is masked: pruned ones read 0
        assert torch.equal(ours[key], theirs * current[key]), key


# ---------------------------------------------------------------- 3. Dense MACs vs FlopCounterMode
#
# FlopCounterMode counts FLOPs = 2 x MACs (a multiply and an add) for matrix products (mm, addmm)
# and convolutions, by shape: the dense work, every weight at every output position, padded
# borders included, pruned zeros included. The bias add is not counted (addmm is counted as the
# mm alone; conv_flop ignores the bias), and BatchNorm, ReLU and pooling count 0. layer_costs
# counts the same thing: ``macs`` (dense, bias not included, Linear/Conv2d only). Only its
# ``effective_macs``, which skip zero weights, have no FlopCounterMode counterpart.

MATMUL_AND_CONV = {"aten.mm", "aten.addmm", "aten.bmm", "aten.convolution", "aten._convolution"}


def _flops(model: nn.Module, input_shape=(1, 1, 28, 28)) -> dict[str, dict[str, int]]:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(*input_shape))
    return {module: {str(op): count for op, count in ops.items()} for module, ops in counter.get_flop_counts().items()}


@pytest.mark.parametrize("name", ["lenet300", "lenet5", "vgg"])
def test_dense_macs_are_half_of_flop_counter_flops_layer_by_layer(name):
    model = build_model(name)
    costs = layer_costs(model, input_shape=(1, 28, 28))
    flops = _flops(model)
    assert set(flops["Global"]) <= MATMUL_AND_CONV, "FlopCounterMode counts only matrix products and convolutions"
    root = type(model).__name__  # FlopCounterMode names a module "<RootClass>.<qualified name>"
    for row in costs.itertuples():
        assert 2 * row.macs == sum(flops[f"{root}.{row.layer}"].values()), row.layer
    assert 2 * costs.macs.sum() == sum(flops["Global"].values())


def test_neither_counts_the_bias_nor_skips_pruned_weights():
    torch.manual_seed(0)
    with_bias = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    without = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(144, 5, bias=False))
    macs = [int(layer_costs(m, input_shape=(2, 6, 6)).macs.sum()) for m in (with_bias, without)]
    flops = [sum(_flops(m, (1, 2, 6, 6))["Global"].values()) for m in (with_bias, without)]
    assert macs[0] == macs[1] == 4 * 2 * 9 * 36 + 144 * 5
    assert flops == [2 * macs[0]] * 2
    apply_masks(with_bias, P.unstructured_masks(with_bias, 0.9))  # zeros change neither count...
    costs = layer_costs(with_bias, input_shape=(2, 6, 6))
    assert sum(_flops(with_bias, (1, 2, 6, 6))["Global"].values()) == 2 * costs.macs.sum() == 2 * macs[0]
    assert costs.effective_macs.sum() < costs.macs.sum()  # ...only our effective MACs see them


# ---------------------------------------------------------------- 4. One scorer of each kind

def test_init_masks_random_and_magnitude_are_the_selection_scorers():
    model = build_model("lenet300")
    for seed in (0, 3):
        assert_same(at_init.init_masks(model, "random", 0.8, seed=seed),
                    P.unstructured_masks(model, 0.8, "random", scope="local", seed=seed))
    assert_same(at_init.init_masks(model, "magnitude", 0.8), P.unstructured_masks(model, 0.8, "magnitude"))
    a, b = (at_init.init_masks(model, "random", 0.8, seed=s) for s in (0, 1))
    assert not any(torch.equal(a[k], b[k]) for k in a), "different seeds, different random controls"


def test_random_scores_of_neighbouring_seeds_share_nothing():
    # Seeding layer i with seed + i (the former pruning-at-init scorer) made layer 1 of seed 0
    # repeat layer 0 of seed 1. One generator per call does not.
    model = build_model("lenet300")
    names = list(prunable_weights(model))
    s0, s1 = P.random_scores(model, names, seed=0), P.random_scores(model, names, seed=1)
    assert not torch.equal(s0[names[1]].flatten()[:100], s1[names[0]].flatten()[:100])
    assert all(torch.equal(x, y) for x, y in zip(s0.values(), P.random_scores(model, names, seed=0).values()))


def assert_same(ours, theirs):
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
