"""Pruning at initialization: SNIP, GraSP and SynFlow scores, and layer collapse."""

import pytest
import torch
from torch import nn

from course_lib.chapters import ch04_pruning_at_initialization as ch04
from course_lib.pruning import at_init as I
from course_lib.masks import mask_sparsity
from course_lib.models import build_model
from course_lib.pruning.selection import collapsed_layers, random_masks_like, taylor_scores
from tests.test_training import _subset


@pytest.fixture(scope="module")
def small(quick_splits):
    return _subset(quick_splits, n=512)


def test_snip_is_the_taylor_score_at_initialization(small):
    model = build_model("lenet300")
    snip = I.snip_scores(model, small.train, num_batches=2)
    taylor = taylor_scores(model, snip.keys(), small.train, num_batches=2)
    assert all(torch.equal(snip[k], taylor[k]) for k in snip)


def test_grasp_hessian_gradient_product_by_hand():
    # One weight w, loss L = (w x)^2 / 2 on x = 1 (through a tiny network we can differentiate by hand)
    # is not cross-entropy; instead check Hg against torch.autograd.functional.hvp on the real loss.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    data = torch.utils.data.TensorDataset(torch.randn(8, 1, 2, 2), torch.randint(0, 3, (8,)))
    scores = I.grasp_scores(model, data, num_batches=1, batch_size=8, temperature=1.0)
    w = model[1].weight.detach().clone().requires_grad_()
    x, y = data.tensors

    def loss(weight):
        return nn.functional.cross_entropy(x.flatten(1) @ weight.T + model[1].bias.detach(), y)

    g = torch.autograd.grad(loss(w), w)[0]
    _, hg = torch.autograd.functional.hvp(loss, w.detach(), g)
    assert torch.allclose(scores["1.weight"], w.detach() * hg, atol=1e-6)


def test_synflow_is_data_free_and_positive():
    model = build_model("vgg")
    scores = I.synflow_scores(model)
    assert all((s >= 0).all() and s.sum() > 0 for s in scores.values())
    assert next(model.parameters()).min() < 0, "the model itself must keep its signs"


def test_iterative_synflow_avoids_the_layer_collapse_of_one_shot_scores(small):
    for name in ("lenet300", "vgg"):
        model = build_model(name)
        for method in ("magnitude", "snip", "synflow-oneshot"):
            assert collapsed_layers(I.init_masks(model, method, 0.999, small.train)), (name, method)
        masks = I.init_masks(model, "synflow", 0.999)
        assert not collapsed_layers(masks) and mask_sparsity(masks) == pytest.approx(0.999, abs=1e-4)


def test_random_masks_keep_each_layers_count():
    masks = I.init_masks(build_model("lenet300"), "synflow", 0.95)
    shuffled = random_masks_like(masks, seed=3)
    for name in masks:
        assert shuffled[name].sum() == masks[name].sum() and not torch.equal(shuffled[name], masks[name])


def test_methods_needing_data_say_so():
    with pytest.raises(ValueError, match="needs training data"):
        I.init_masks(build_model("lenet300"), "snip", 0.9)
    with pytest.raises(ValueError, match="Unknown method"):
        I.init_masks(build_model("lenet300"), "grasp2", 0.9, data=None)


def test_the_positive_control_prunes_a_trained_network_and_rewinds_it(small, monkeypatch):
    # The control's mask is the global magnitude mask of the network *after* training from theta_0; the three
    # variants then train from theta_0 (as found, shuffled) or a fresh init, like every at-init method.
    from course_lib.training import TrainConfig

    trained_masks = []
    real = I.init_masks

    def spy(model, method, sparsity, *args, **kwargs):
        masks = real(model, method, sparsity, *args, **kwargs)
        if method == "magnitude":
            trained_masks.append((masks, real(build_model("lenet300", seed=5), "magnitude", sparsity)))
        return masks

    monkeypatch.setattr(ch04, "init_masks", spy)
    rows = ch04.sanity_checks("lenet300", small, TrainConfig(epochs=1), [ch04.POSITIVE_CONTROL], 0.9, seed=5,
                              progress=False)
    assert [(r["method"], r["variant"]) for r in rows] == [(ch04.POSITIVE_CONTROL, v) for v in ch04.SANITY_VARIANTS]
    (after_training, at_init), = trained_masks
    assert abs(mask_sparsity(after_training) - 0.9) < 0.01
    assert any(not torch.equal(after_training[k], at_init[k]) for k in at_init)  # ranked after training, not at theta_0
