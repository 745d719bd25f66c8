"""Multiply-accumulate counts of the model summary's trace."""

from cnnkit import nn
from cnnkit.models.summary import trace


def test_multiply_adds_count_each_product_of_the_convolution_sum():
    """Conv: outputs x (C/groups) x kH x kW; separable: depthwise + pointwise; linear: in x out."""
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, groups=1),
        nn.SeparableConv2d(8, 16, 3, padding=1),
        nn.Conv2d(16, 16, 3, stride=2, groups=4),
        nn.Flatten(),
        nn.Linear(16 * 3 * 3, 5),
        nn.ReLU(),
    )
    rows = trace(model, (2, 3, 8, 8)).rows
    expected = [
        2 * 8 * 8 * 8 * 3 * 3 * 3,
        2 * 8 * 8 * 8 * 3 * 3 + 2 * 16 * 8 * 8 * 8,
        2 * 16 * 3 * 3 * 4 * 3 * 3,
        0,
        2 * 144 * 5,
        0,
    ]
    assert [row.mult_adds for row in rows] == expected
