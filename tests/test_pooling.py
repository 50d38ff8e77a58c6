import pytest
import torch

from emosphere.pooling import POOLINGS, build_pooling


@pytest.mark.parametrize("name", POOLINGS)
def test_padding_content_never_matters(name):
    torch.manual_seed(0)
    pooling = build_pooling(name, 16).eval()
    x = torch.randn(3, 20, 16)
    mask = torch.zeros(3, 20, dtype=torch.bool)
    for row, n in enumerate((20, 11, 1)):
        mask[row, :n] = True
    garbage = x.clone()
    garbage[~mask] = 1e3
    with torch.no_grad():
        a, b = pooling(x, mask), pooling(garbage, mask)
        alone = torch.stack([pooling(x[i : i + 1, :n], mask[i : i + 1, :n])[0] for i, n in enumerate((20, 11, 1))])
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    torch.testing.assert_close(a, alone, atol=1e-5, rtol=0)


def test_output_sizes():
    assert build_pooling("style", 8).output_dim == 8
    assert build_pooling("attentive", 8).output_dim == 16
    assert build_pooling("mean", 8).output_dim == 8
    with pytest.raises(ValueError, match="style"):
        build_pooling("max", 8)


def test_style_pooling_structure_follows_the_paper():
    style = build_pooling("style", 32, heads=2)
    assert len(style.temporal) == 2 and style.temporal[0].conv.kernel_size == (5,)
    assert style.temporal[0].conv.out_channels == 64  # to 2x channels for the GLU
    assert style.attention.heads == 2 and style.attention.scale == pytest.approx(32**-0.5)
