import pytest
import torch

from mu_lib import models


@pytest.mark.parametrize("name", models.available())
def test_models_build_and_reinitialize(name):
    size, ch = (32, 3) if name.startswith("resnet") else (8, 1)
    net = models.make_model(name, num_classes=7, in_channels=ch, image_size=size, seed=0)
    out = net.eval()(torch.zeros(2, ch, size, size))
    assert out.shape == (2, 7)
    before = [p.detach().clone() for p in net.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    models.reinitialize(net, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    models.reinitialize(net, seed=1)
    assert not all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_batchnorm_detection_and_errors():
    assert models.has_batchnorm(models.make_model("resnet18", num_classes=10, in_channels=3, image_size=32))
    assert not models.has_batchnorm(models.make_model("small_cnn", num_classes=10, in_channels=1, image_size=28))
    with pytest.raises(ValueError, match="unknown model 'vgg'.*small_cnn"):
        models.make_model("vgg", num_classes=10, in_channels=1, image_size=8)
    with pytest.raises(ValueError, match="num_classes must be positive"):
        models.make_model("mlp", num_classes=0, in_channels=1, image_size=8)


def test_resnet18_has_cifar_stem():
    net = models.make_model("resnet18", num_classes=10, in_channels=3, image_size=32)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, torch.nn.Identity)
