"""One-shot pruning from calibration inputs: magnitude, Wanda and SparseGPT, layer by layer and on a model."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from course_lib.masks import get_masks, is_masked
from course_lib.pruning import one_shot
from course_lib.pruning.one_shot import Calibration, mask_from_scores, prune_one_shot, sparsegpt


def _inputs(tokens: int = 512, features: int = 16, seed: int = 0) -> torch.Tensor:
    """Correlated inputs whose channels differ in scale by two orders of magnitude, as a transformer's do."""
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(features, features, generator=g) / features ** 0.5 + torch.eye(features)
    scales = torch.logspace(-1, 1, features)[torch.randperm(features, generator=g)]
    return (torch.randn(tokens, features, generator=g) @ mixing) * scales


def _calibrated(x: torch.Tensor) -> Calibration:
    calibration = Calibration(x.shape[1])
    calibration.add(x)
    return calibration


def _error(weight: torch.Tensor, pruned: torch.Tensor, x: torch.Tensor) -> float:
    """The layer-wise loss the methods aim at: ‖W X − Ŵ X‖² over the calibration tokens."""
    return float(((x @ weight.T - x @ pruned.T) ** 2).sum())


def test_calibration_holds_the_input_norms_and_the_hessian_of_every_token():
    x = _inputs(tokens=60)
    calibration = Calibration(16)
    for batch in x.reshape(3, 4, 5, 16):  # batches of (sequences, positions, features): every position is a token
        calibration.add(batch)
    assert calibration.tokens == 60
    assert torch.allclose(calibration.input_norms(), x.double().norm(dim=0))
    assert torch.allclose(calibration.hessian(), x.double().T @ x.double() / 60)
    with pytest.raises(ValueError, match="16 input features"):
        calibration.add(torch.ones(2, 8))
    with pytest.raises(ValueError, match="no calibration inputs"):
        Calibration(4).hessian()


def test_row_masks_prune_exactly_the_share_of_every_row_and_n_of_every_m():
    scores = torch.rand(6, 16, generator=torch.Generator().manual_seed(1))
    keep = mask_from_scores(scores, sparsity=0.5)
    assert (keep.sum(dim=1) == 8).all()
    assert (scores[keep].min() >= 0) and all(scores[r][keep[r]].min() >= scores[r][~keep[r]].max() for r in range(6))
    keep = mask_from_scores(scores, nm=(2, 4))
    assert (keep.reshape(6, 4, 4).sum(dim=-1) == 2).all()
    assert mask_from_scores(torch.zeros(3, 8), sparsity=0.25).sum() == 18  # ties: still exactly the count
    with pytest.raises(ValueError, match="exactly one pattern"):
        mask_from_scores(scores, sparsity=0.5, nm=(2, 4))
    with pytest.raises(ValueError, match="multiple of m"):
        mask_from_scores(torch.rand(2, 10), nm=(2, 4))


def test_wanda_is_magnitude_when_every_input_is_as_large_and_weighs_weights_by_their_inputs():
    weight = torch.randn(8, 16, generator=torch.Generator().manual_seed(2))
    equal = _calibrated(torch.eye(16))  # every input feature has norm 1
    assert torch.equal(mask_from_scores(one_shot.wanda_scores(weight, equal), 0.5),
                       mask_from_scores(one_shot.magnitude_scores(weight), 0.5))
    # |w| = (1, 3) on inputs of norm (2, 1): Wanda keeps the small weight on the large input; magnitude the other
    small_on_large = torch.tensor([[1.0, 3.0]])
    calibration = _calibrated(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
    assert mask_from_scores(one_shot.wanda_scores(small_on_large, calibration), 0.5).tolist() == [[False, True]]
    calibration = _calibrated(torch.tensor([[2.0, 0.0], [0.0, 1.0]]) * torch.tensor([2.0, 0.5]))  # norms (4, 0.5)
    assert mask_from_scores(one_shot.wanda_scores(small_on_large, calibration), 0.5).tolist() == [[True, False]]


def test_sparsegpt_at_zero_sparsity_returns_the_weights_unchanged():
    weight, x = torch.randn(8, 16), _inputs()
    pruned, keep = sparsegpt(weight, _calibrated(x).hessian(), sparsity=0.0, block_size=4)
    assert keep.all() and torch.allclose(pruned, weight, atol=1e-6)


@pytest.mark.parametrize("q", [0, 5])
def test_removing_one_weight_is_the_optimal_brain_surgeon_update_over_the_columns_still_to_come(q):
    weight, x = torch.randn(4, 12, dtype=torch.float64), _inputs(features=12).double()
    hessian = _calibrated(x).hessian()
    prune = torch.zeros(4, 12, dtype=torch.bool)
    prune[2, q] = True
    pruned, keep = sparsegpt(weight, hessian, prune=prune, block_size=4, damping=0.01)
    damped = hessian + 0.01 * hessian.diagonal().mean() * torch.eye(12, dtype=torch.float64)
    inverse = torch.linalg.inv(damped[q:, q:])  # the Hessian of the columns not yet fixed when q is reached
    expected = weight[2].clone()
    expected[q:] -= weight[2, q] / inverse[0, 0] * inverse[0]
    assert torch.allclose(pruned[2], expected, atol=1e-9) and pruned[2, q] == 0
    assert torch.equal(pruned[[0, 1, 3]], weight[[0, 1, 3]]) and keep.sum() == 47
    if q == 0:  # with no column fixed before it, this is least squares: the best row with that weight at zero
        free = torch.linalg.lstsq(damped[1:, 1:], damped[1:] @ weight[2]).solution  # normal equations of the rest
        assert torch.allclose(pruned[2, 1:], free, atol=1e-8)


@pytest.mark.parametrize("pattern", [{"sparsity": 0.5}, {"nm": (2, 4)}])
def test_on_correlated_inputs_sparsegpt_reconstructs_best_then_wanda_then_magnitude(pattern):
    x, weight = _inputs(), torch.randn(32, 16, generator=torch.Generator().manual_seed(3))
    calibration = _calibrated(x)
    errors = {}
    for name, scores in (("magnitude", one_shot.magnitude_scores(weight)),
                         ("wanda", one_shot.wanda_scores(weight, calibration))):
        errors[name] = _error(weight, weight * mask_from_scores(scores, **pattern), x)
    pruned, keep = sparsegpt(weight, calibration.hessian(), **pattern, block_size=8)
    errors["sparsegpt"] = _error(weight, pruned, x)
    assert errors["sparsegpt"] < errors["wanda"] < errors["magnitude"], errors
    assert (pruned[~keep] == 0).all() and keep.sum() == weight.numel() // 2


def test_sparsegpt_patterns_are_exact_and_n_m_does_not_depend_on_the_block():
    weight, hessian = torch.randn(8, 16), _calibrated(_inputs()).hessian()
    _, keep = sparsegpt(weight, hessian, sparsity=0.5, block_size=4)
    assert (keep.reshape(8, 4, 4).sum(dim=(0, 2)) == 16).all()  # half of every block of 4 columns
    a, keep_a = sparsegpt(weight, hessian, nm=(2, 4), block_size=4)
    b, keep_b = sparsegpt(weight, hessian, nm=(2, 4), block_size=8)
    assert (keep_a.reshape(8, 4, 4).sum(dim=-1) == 2).all() and torch.equal(keep_a, keep_b)
    assert torch.allclose(a, b, atol=1e-5)
    c, _ = sparsegpt(weight, 7.0 * hessian, nm=(2, 4), block_size=4)  # H's scale changes nothing
    assert torch.allclose(a, c, atol=1e-5)


def test_damping_makes_a_rank_deficient_hessian_usable_and_dead_inputs_are_pruned_free():
    weight, x = torch.randn(4, 16), _inputs(tokens=6)  # 6 tokens for 16 inputs: H has rank 6
    with pytest.raises(ValueError, match="not positive definite"):
        sparsegpt(weight, _calibrated(x).hessian(), sparsity=0.5, damping=0.0)
    pruned, _ = sparsegpt(weight, _calibrated(x).hessian(), sparsity=0.5, damping=0.01)
    assert torch.isfinite(pruned).all()
    x = _inputs()
    x[:, 3] = 0.0  # an input that never varies from zero
    pruned, keep = sparsegpt(weight, _calibrated(x).hessian(), sparsity=0.0)
    assert not keep[:, 3].any() and keep.sum() == 60 and torch.allclose(pruned[:, 4:], weight[:, 4:], atol=1e-5)


def test_damping_by_each_inputs_own_size_makes_sparsegpt_blind_to_rescaled_inputs():
    x, weight = _inputs(), torch.randn(8, 16, generator=torch.Generator().manual_seed(2))
    scale = torch.ones(16)
    scale[[2, 7]] = 100.0  # two inputs 100 times larger, their weights 100 times smaller: the same outputs
    results = {}
    for damping_scale in ("mean", "own"):
        plain, keep = sparsegpt(weight, _calibrated(x).hessian(), nm=(2, 4), damping_scale=damping_scale)
        scaled, keep_scaled = sparsegpt(weight / scale, _calibrated(x * scale).hessian(), nm=(2, 4),
                                        damping_scale=damping_scale)
        results[damping_scale] = torch.equal(keep, keep_scaled) and torch.allclose(scaled * scale, plain, atol=1e-4)
    assert results == {"mean": False, "own": True}  # the mean diagonal grows with the two large inputs
    with pytest.raises(ValueError, match="damping_scale"):
        sparsegpt(weight, _calibrated(x).hessian(), sparsity=0.5, damping_scale="max")


def test_a_wanda_mask_repaired_by_sparsegpts_update_keeps_the_mask_and_reconstructs_better():
    x, layer = _inputs(), nn.Linear(16, 8)
    calibration = _calibrated(x)
    chosen = one_shot.prune_layer(copy.deepcopy(layer), "wanda", calibration, nm=(2, 4))
    repaired_layer = copy.deepcopy(layer)
    repaired = one_shot.prune_layer(repaired_layer, "wanda", calibration, nm=(2, 4), update=True)
    assert torch.equal(chosen, repaired)  # the same mask, chosen by Wanda's scores
    weight = layer.weight.detach()
    assert _error(weight, repaired_layer.weight.detach() * repaired, x) < _error(weight, weight * chosen, x)


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))


@pytest.mark.parametrize("sequential", [True, False])
def test_a_model_pruned_in_one_shot_carries_its_masks_and_sparsegpt_keeps_its_outputs_closest(sequential):
    batches = list(_inputs(tokens=256).reshape(4, 64, 16))
    x = torch.cat(batches)
    dense = _mlp()
    outputs = {}
    for method in one_shot.METHODS:
        model = _mlp()
        masks = prune_one_shot(model, ["0", "2"], method, batches, sparsity=0.5, sequential=sequential)
        assert is_masked(model) and set(get_masks(model)) == {"0.weight", "2.weight"}
        for mask in masks.values():  # half of every row; SparseGPT: half of every block of columns, rows compete
            kept, half = (mask.sum(), mask.numel() // 2) if method == "sparsegpt" else (mask.sum(dim=1), mask.shape[1] // 2)
            assert (kept == half).all(), method
        assert (model[0].weight[~masks["0.weight"]] == 0).all()
        with torch.no_grad():
            outputs[method] = float(((model(x) - dense(x)) ** 2).mean())
    assert outputs["sparsegpt"] < outputs["magnitude"], outputs


def test_bad_requests_are_named():
    model, batches = _mlp(), [torch.randn(8, 16)]
    with pytest.raises(ValueError, match="not linear layers"):
        prune_one_shot(model, ["1"], "wanda", batches, sparsity=0.5)
    with pytest.raises(ValueError, match="unknown one-shot method"):
        prune_one_shot(model, ["0"], "obs", batches, sparsity=0.5)
    prune_one_shot(model, ["0"], "magnitude", batches, sparsity=0.5)
    with pytest.raises(ValueError, match="already carries masks"):
        prune_one_shot(model, ["2"], "magnitude", batches, sparsity=0.5)


def _torchao_wanda_mask(weight: torch.Tensor, x: torch.Tensor, **options) -> torch.Tensor:
    """torchao's WandaSparsifier (release 0.18, the last with torchao.sparsity) on one linear layer: its keep-mask."""
    sparsity = pytest.importorskip("torchao.sparsity")
    layer = nn.Sequential(nn.Linear(weight.shape[1], weight.shape[0], bias=False))
    with torch.no_grad():
        layer[0].weight.copy_(weight)
    sparsifier = sparsity.WandaSparsifier(**options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization.prepare is deprecated in torch 2.14
        sparsifier.prepare(layer, [{"tensor_fqn": "0.weight"}])
        with torch.no_grad():
            layer(x)
        sparsifier.step()
        sparsifier.squash_mask()
    return layer[0].weight.detach() != 0


def _layer_wide(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep the largest scores of the whole layer (one ranking for all rows), as torchao does."""
    keep = torch.ones(scores.numel(), dtype=torch.bool)
    keep[scores.flatten().argsort()[:round(sparsity * scores.numel())]] = False
    return keep.reshape(scores.shape)


def test_torchao_wanda_ranks_the_whole_layer_by_weight_times_squared_input_norm():
    x, weight = _inputs(tokens=256), torch.randn(8, 16, generator=torch.Generator().manual_seed(5))
    theirs = _torchao_wanda_mask(weight, x, sparsity_level=0.5)
    norms = _calibrated(x).input_norms().float()
    # torchao compares over the whole layer, with ‖X_j‖² where the paper has ‖X_j‖ (it keeps Σx², no square root):
    assert torch.equal(theirs, _layer_wide(weight.abs() * norms ** 2, 0.5))
    ours = mask_from_scores(one_shot.wanda_scores(weight, _calibrated(x)), 0.5)  # the paper's: ‖X_j‖, within each row
    assert (ours.sum(dim=1) == 8).all() and not (theirs.sum(dim=1) == 8).all()  # only ours keeps half of every row
    equal_inputs = torch.randn(256, 16)
    equal_inputs = equal_inputs / equal_inputs.norm(dim=0)  # every ‖X_j‖ = 1: the square no longer matters
    assert torch.equal(_torchao_wanda_mask(weight, equal_inputs, sparsity_level=0.5),
                       _layer_wide(one_shot.wanda_scores(weight, _calibrated(equal_inputs)), 0.5))


def test_torchao_wanda_2_4_is_our_2_4_with_its_squared_norms():
    x, weight = _inputs(tokens=256), torch.randn(8, 16, generator=torch.Generator().manual_seed(6))
    theirs = _torchao_wanda_mask(weight, x, semi_structured_block_size=4)
    norms = _calibrated(x).input_norms().float()
    assert torch.equal(theirs, mask_from_scores(weight.abs() * norms ** 2, nm=(2, 4)))
    assert (theirs.reshape(8, 4, 4).sum(-1) == 2).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="2:4 sparse tensor cores need a CUDA device")
def test_a_2_4_weight_runs_on_the_sparse_tensor_cores_and_gives_the_dense_product():
    weight = torch.randn(128, 128, generator=torch.Generator().manual_seed(0))
    weight = (weight * mask_from_scores(weight.abs(), nm=(2, 4))).half().cuda()
    x = torch.randn(128, 64, dtype=torch.half, device="cuda")
    packed = torch.sparse.to_sparse_semi_structured(weight)
    assert torch.allclose(packed @ x, weight @ x, rtol=1e-2, atol=1e-2)
    ao = pytest.importorskip("torchao")
    model = nn.Sequential(nn.Linear(128, 128)).half().cuda()
    with torch.no_grad():
        model[0].weight.copy_(weight)
    ao.sparsity.sparsify_(model, ao.sparsity.SemiSparseWeightConfig())
    assert torch.allclose(model(x.T), nn.functional.linear(x.T, weight, model[0].bias), rtol=1e-2, atol=1e-2)
