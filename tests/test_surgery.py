"""Physical removal of units gives a smaller network with the same outputs."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from course_lib.masks import apply_masks
from course_lib.costs import count_parameters
from course_lib.models import CourseNet, build_model
from course_lib.pruning.selection import structured_masks, unstructured_masks
from course_lib.pruning.surgery import shrink


def _trained_like(model):
    """Give BatchNorm non-trivial scales and running statistics, as after training."""
    model.train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:
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
    assert small.net.conv3.out_channels == 16 and small.net.bn3.num_features == 16
    assert small.net.bn3.running_mean.shape == (16,)
    assert small.net.fc.in_features == 16 * 3 * 3  # 16 surviving channels of a 3x3 map


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
    assert hasattr(model.net.fc1, "parametrizations"), "shrink must work on a copy"


def test_unsupported_models_are_refused():
    with pytest.raises(TypeError, match="nn.Sequential called `net`"):
        shrink(nn.Linear(3, 3))


class _Layers(CourseNet):
    """A course-style model around any named layers."""

    def __init__(self, **layers: nn.Module) -> None:
        super().__init__()
        self.net = nn.Sequential(OrderedDict(layers))


def test_layers_keep_their_names():
    small = shrink(build_model("vgg"))
    assert list(small.net._modules) == list(build_model("vgg").net._modules)


def test_batchnorm_without_scale_and_shift():
    torch.manual_seed(0)
    model = _trained_like(_Layers(conv1=nn.Conv2d(1, 8, 3, padding=1), bn1=nn.BatchNorm2d(8, affine=False),
                                  relu1=nn.ReLU(), flatten=nn.Flatten(), fc=nn.Linear(8 * 28 * 28, 10)))
    apply_masks(model, structured_masks(model, 0.5))  # masks conv1's rows and bias; bn1 has nothing to mask
    dead = torch.nonzero(model.net.conv1.bias == 0).flatten()
    with torch.no_grad():  # as after fine-tuning with the units masked, except for one: its running mean stays
        model.net.bn1.running_mean[dead[1:]] = 0.0
    small = shrink(model)
    # A dead unit still emits -running_mean / std after an affine-free BatchNorm: only the 3 with mean 0 may go.
    assert small.net.conv1.out_channels == 5 and small.net.bn1.running_var.shape == (5,)
    assert small.net.fc.in_features == 5 * 28 * 28
    x = torch.randn(4, 1, 28, 28)
    assert torch.allclose(small(x), model(x), atol=1e-5)


def test_batchnorm_after_a_relu_belongs_to_the_layer_before():
    torch.manual_seed(0)
    model = _trained_like(_Layers(flatten=nn.Flatten(), fc1=nn.Linear(784, 6), relu1=nn.ReLU(),
                                  bn1=nn.BatchNorm1d(6), fc2=nn.Linear(6, 10)))
    with torch.no_grad():
        model.net.fc1.weight[:3] = 0.0
        model.net.fc1.bias[:3] = 0.0
        model.net.bn1.weight[:2] = 0.0
        model.net.bn1.bias[:2] = 0.0  # unit 2 keeps its BatchNorm shift: it still feeds fc2 a constant
    small = shrink(model)
    assert small.net.fc1.out_features == 4 and small.net.bn1.num_features == 4
    x = torch.randn(4, 1, 28, 28)
    assert torch.allclose(small(x), model(x), atol=1e-5)


def test_a_batchnorm_without_its_layer_is_refused():
    model = _Layers(conv1=nn.Conv2d(1, 2, 3), flatten=nn.Flatten(), bn1=nn.BatchNorm1d(2 * 26 * 26),
                    fc=nn.Linear(2 * 26 * 26, 10))
    with pytest.raises(TypeError, match=r"cannot tell whose units BatchNorm \['bn1'\]"):
        shrink(model)


@pytest.mark.parametrize("name", ["lenet300", "lenet5", "vgg"])
def test_torch_pruning_removes_what_shrink_removes(name):
    """Torch-Pruning's dependency graph, told to remove the units our masks removed, builds the same network."""
    import torch_pruning as tp

    from course_lib.costs import prunable_layers
    from course_lib.pruning.dependency import dependency_graph

    model = _trained_like(build_model(name))
    masks = structured_masks(model, 0.5, criterion="l1", scope="local")
    apply_masks(masks_model := _copy(model), masks)
    ours = shrink(masks_model)

    theirs = _copy(model)
    graph = dependency_graph(theirs)
    layers = prunable_layers(theirs)
    for layer_name, layer in list(layers.items())[:-1]:  # the output layer keeps its classes
        removed = torch.nonzero(masks[f"{layer_name}.weight"].flatten(1).sum(dim=1) == 0).flatten().tolist()
        handler = tp.prune_conv_out_channels if isinstance(layer, nn.Conv2d) else tp.prune_linear_out_channels
        graph.get_pruning_group(layer, handler, idxs=removed).prune()
    x = torch.randn(16, 1, 28, 28)
    assert count_parameters(theirs) == count_parameters(ours)
    assert [tuple(p.shape) for p in theirs.parameters()] == [tuple(p.shape) for p in ours.parameters()]
    assert torch.allclose(theirs.eval()(x), ours.eval()(x), atol=1e-5)


def _copy(model):
    import copy
    return copy.deepcopy(model)


def test_shrink_refuses_a_residual_network_and_names_the_alternative():
    with pytest.raises(TypeError, match="nn.Sequential"):
        shrink(build_model("resnet"))


def test_coupled_channels_of_a_residual_network_cross_the_addition():
    from course_lib.pruning.dependency import coupled_channels, prune_channels

    model = build_model("resnet")
    group = coupled_channels(model, "conv1")
    outputs = set(group.loc[group.cut == "output channel", "layer"])
    assert {"conv1", "bn1", "block1.conv2", "block1.bn2"} <= outputs  # tied by block1's identity shortcut
    assert {"block1.conv1", "block2.conv1", "block2.shortcut.0"} <= set(group.loc[group.cut == "input channel", "layer"])
    small = prune_channels(_trained_like(model), 0.5)
    assert small.conv1.out_channels == small.block1.conv2.out_channels == 4
    assert small(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert model.conv1.out_channels == 8, "the original must not change"


def test_a_cut_along_the_chain_runs_on_a_chain_and_breaks_a_residual_addition():
    from course_lib.pruning.dependency import cut_along_the_chain

    vgg = build_model("vgg", seed=0).eval()
    chain = cut_along_the_chain(vgg, "net.conv1", "net.bn1", "net.conv2")
    assert chain(torch.zeros(2, 1, 28, 28)).shape == (2, 10)  # a chain: the next layer's input was all there was
    assert chain.net.conv1.out_channels == vgg.net.conv1.out_channels - 1  # and the original is untouched

    resnet = build_model("resnet", seed=0).eval()
    with pytest.raises(RuntimeError, match="must match"):  # the block's addition: one addend kept every channel
        cut_along_the_chain(resnet, "conv1", "bn1", "block1.conv1")(torch.zeros(2, 1, 28, 28))
