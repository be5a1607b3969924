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


def test_resnet9_is_pages_dawnbench_network():
    """Page's ResNet-9: prep 64, layer1 128 + residual, layer2 256, layer3 512 + residual, max-pool,
    a linear layer without bias and logits scaled by 0.125; 6.57 M parameters at full width."""
    net = models.make_model("resnet9", num_classes=10, in_channels=3, image_size=32, seed=0)
    assert isinstance(net, models.ResNet9)
    assert sum(p.numel() for p in net.parameters()) == 6_573_120
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 128, 128, 256, 512, 512, 512]
    assert all(c.kernel_size == (3, 3) and c.bias is None for c in convs)
    assert net.fc.bias is None and net.logit_scale == 0.125
    x = torch.randn(2, 3, 32, 32)
    net.eval()
    feats = torch.nn.Sequential(*list(net.children())[:-1])(x)
    assert torch.allclose(net(x), 0.125 * net.fc(feats))
    tiny = models.make_model("resnet9_tiny", num_classes=10, in_channels=3, image_size=32, seed=0)
    assert [m.out_channels for m in tiny.modules() if isinstance(m, torch.nn.Conv2d)] == \
        [c // 16 for c in [64, 128, 128, 128, 256, 512, 512, 512]]
    assert type(tiny) is type(net) and models.has_batchnorm(tiny)
    # grayscale 28x28 works too (adaptive global pooling)
    gray = models.make_model("resnet9_tiny", num_classes=10, in_channels=1, image_size=28)
    assert gray(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="width must be positive"):
        models.ResNet9(3, 10, width=0)
