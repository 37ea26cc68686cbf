"""Physical removal of units gives a smaller network with the same outputs."""

import pytest
import torch
from torch import nn

from course_lib.masks import apply_masks
from course_lib.costs import count_parameters
from course_lib.models import build_model
from course_lib.pruning.selection import structured_masks, unstructured_masks
from course_lib.pruning.surgery import shrink


def _trained_like(model):
    """Give BatchNorm non-trivial scales and running statistics, as after training."""
    model.train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.1, 1.0)
                m.bias.uniform_(-0.2, 0.2)
        for _ in range(3):
            model(torch.randn(64, 1, 28, 28))
    return model.eval()


@pytest.mark.parametrize("name, criterion", [("lenet300", "l1"), ("lenet5", "l2"), ("vgg", "bn_scale"), ("vgg", "l1")])
def test_shrunk_model_computes_what_the_masked_model_computes(name, criterion):
    model = _trained_like(build_model(name))
    apply_masks(model, structured_masks(model, 0.5, criterion=criterion, scope="local"))
    small = shrink(model)
    x = torch.randn(16, 1, 28, 28)
    assert torch.allclose(small(x), model(x), atol=1e-5)
    assert count_parameters(small) < 0.6 * count_parameters(build_model(name))


def test_flatten_boundary_and_batchnorm_are_sliced():
    model = _trained_like(build_model("vgg"))
    apply_masks(model, structured_masks(model, 0.5, scope="local"))
    small = shrink(model)
    assert small.net[8].out_channels == 16 and small.net[9].num_features == 16
    assert small.net[9].running_mean.shape == (16,)
    assert small.net[13].in_features == 16 * 3 * 3  # 16 surviving channels of a 3x3 map


def test_the_next_layers_inputs_go_too():
    model = build_model("lenet300")
    apply_masks(model, structured_masks(model, 0.5, scope="local"))
    small = shrink(model)
    # 150 neurons of 300 and 50 of 100 removed: next layers lose 150 and 50 input columns.
    assert [m.weight.shape for m in small.net if isinstance(m, nn.Linear)] == [(150, 784), (50, 150), (10, 50)]


def test_unstructured_masks_remove_nothing_and_the_original_is_untouched():
    model = build_model("lenet300")
    apply_masks(model, unstructured_masks(model, 0.5))
    small = shrink(model)
    assert count_parameters(small) == count_parameters(model)
    assert hasattr(model.net[1], "parametrizations"), "shrink must work on a copy"


def test_unsupported_models_are_refused():
    with pytest.raises(TypeError, match="nn.Sequential called `net`"):
        shrink(nn.Linear(3, 3))
