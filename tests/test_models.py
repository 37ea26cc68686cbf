"""The course's networks: shapes, sizes and seeded initialisation."""

import pytest
import torch

from course_lib.costs import count_parameters
from course_lib.models import MODELS, build_model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_map_images_to_ten_logits(name):
    assert build_model(name)(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_lenet300_has_the_papers_parameter_count():
    # 784*300+300 + 300*100+100 + 100*10+10, as in Han et al. 2015 and Frankle & Carbin 2019.
    assert count_parameters(build_model("lenet300")) == 266_610


def test_layers_have_readable_names():
    assert [name for name, _ in build_model("lenet300").named_parameters()] == [
        "net.fc1.weight", "net.fc1.bias", "net.fc2.weight", "net.fc2.bias", "net.fc3.weight", "net.fc3.bias"]
    assert list(build_model("lenet5").net._modules) == [
        "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "fc1", "relu3", "fc2", "relu4", "fc3"]
    assert list(build_model("vgg").net._modules) == [
        "conv1", "bn1", "relu1", "pool1", "conv2", "bn2", "relu2", "pool2", "conv3", "bn3", "relu3", "pool3",
        "flatten", "fc"]


def test_lenet5_keeps_the_classic_geometry():
    # 28x28 padded by 2 -> conv 28 -> pool 14 -> conv 10 -> pool 5: 16*5*5 = 400 features.
    assert build_model("lenet5").net.fc1.in_features == 400


@pytest.mark.parametrize("name", sorted(MODELS))
def test_same_seed_same_init_and_global_rng_untouched(name):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a, b, c = build_model(name, seed=7), build_model(name, seed=7), build_model(name, seed=8)
    assert torch.equal(torch.rand(1), expected_next), "build_model must not consume the caller's random numbers"
    for (_, pa), (_, pb), (_, pc) in zip(a.named_parameters(), b.named_parameters(), c.named_parameters()):
        assert torch.equal(pa, pb)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="lenet300"):
        build_model("resnet50")
