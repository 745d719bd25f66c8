"""Graph (non-chain models) and its joins (Concat, Split, Add) against torch.

A DenseNet block, a ShuffleNet v2 unit and an Inception block are built as cnnkit Graphs and as
torch modules with the same attribute names; the torch weights are loaded into cnnkit through
state_dict, and outputs, input gradients, every parameter gradient and the batch-norm running
statistics must agree in float64. Then fan-out accumulation, several inputs and outputs, weight
sharing, modes, summaries and every error message.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit
import cnnkit.functional as F
import cnnkit.nn as nn
from cnnkit.gradcheck import assert_gradcheck
from cnnkit.models.summary import summary, trace

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("torch_single_thread")
tnn = torch.nn

SETTINGS = settings(max_examples=25, deadline=None)
F64 = {"rtol": 1e-10, "atol": 1e-12}
D = {"dtype": np.float64}


def to_torch(arrays):
    return [torch.from_numpy(a).requires_grad_() for a in arrays]


def compare_with_torch(graph, reference, inputs, rng, steps: int = 2) -> None:
    """Load torch's weights, run ``steps`` training passes on both, compare everything."""
    reference = reference.double()
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.2 * torch.randn(p.shape, dtype=p.dtype))
    state = {k: v.detach().numpy().copy() for k, v in reference.state_dict().items()}
    assert list(graph.state_dict()) == list(state)
    graph.load_state_dict(state)
    for _ in range(steps):
        leaves = to_torch(inputs)
        expected = reference(*leaves)
        expected = expected if isinstance(expected, tuple) else (expected,)
        outs = graph(*inputs)
        outs = outs if isinstance(outs, tuple) else (outs,)
        douts = tuple(rng.standard_normal(e.shape) for e in expected)
        for out, want in zip(outs, expected, strict=True):
            np.testing.assert_allclose(out, want.detach().numpy(), **F64)
        torch.autograd.backward(expected, [torch.from_numpy(d) for d in douts])
        dxs = graph.backward(douts if len(douts) > 1 else douts[0])
        dxs = dxs if isinstance(dxs, tuple) else (dxs,)
        for dx, leaf in zip(dxs, leaves, strict=True):
            np.testing.assert_allclose(dx, leaf.grad.numpy(), **F64)
    theirs = dict(reference.named_parameters())
    for name, p in graph.named_parameters():
        np.testing.assert_allclose(p.grad, theirs[name].grad.numpy(), err_msg=name, **F64)
    for name, buffer in reference.named_buffers():
        np.testing.assert_allclose(graph.state_dict()[name], buffer.numpy(), err_msg=name, **F64)


class TorchDenseBlock(tnn.Module):
    """Two DenseNet layers (BN-ReLU-conv3x3), each output joined to everything before it."""

    def __init__(self, c: int, growth: int):
        super().__init__()
        self.bn1, self.conv1 = tnn.BatchNorm2d(c), tnn.Conv2d(c, growth, 3, padding=1)
        self.bn2 = tnn.BatchNorm2d(c + growth)
        self.conv2 = tnn.Conv2d(c + growth, growth, 3, padding=1)

    def forward(self, x):
        x1 = torch.cat([x, self.conv1(torch.relu(self.bn1(x)))], 1)
        return torch.cat([x1, self.conv2(torch.relu(self.bn2(x1)))], 1)


def dense_block(c: int, growth: int) -> nn.Graph:
    g = nn.Graph(inputs=["x"])
    g.add("bn1", nn.BatchNorm2d(c, **D), "x").add("relu1", nn.ReLU(), "bn1")
    g.add("conv1", nn.Conv2d(c, growth, 3, padding=1, **D), "relu1")
    g.add("cat1", nn.Concat(), "x", "conv1")
    g.add("bn2", nn.BatchNorm2d(c + growth, **D), "cat1").add("relu2", nn.ReLU(), "bn2")
    g.add("conv2", nn.Conv2d(c + growth, growth, 3, padding=1, **D), "relu2")
    g.add("cat2", nn.Concat(), "cat1", "conv2")
    return g.outputs("cat2")


class TorchShuffleUnit(tnn.Module):
    """ShuffleNet v2's stride-1 unit: split the channels, transform one half, join, shuffle."""

    def __init__(self, c: int):
        super().__init__()
        h = c // 2
        self.pw1, self.bn1 = tnn.Conv2d(h, h, 1, bias=False), tnn.BatchNorm2d(h)
        self.dw, self.bn2 = tnn.Conv2d(h, h, 3, padding=1, groups=h, bias=False), tnn.BatchNorm2d(h)
        self.pw2, self.bn3 = tnn.Conv2d(h, h, 1, bias=False), tnn.BatchNorm2d(h)
        self.shuffle = tnn.ChannelShuffle(2)

    def forward(self, x):
        keep, branch = x.chunk(2, dim=1)
        branch = torch.relu(self.bn1(self.pw1(branch)))
        branch = torch.relu(self.bn3(self.pw2(self.bn2(self.dw(branch)))))
        return self.shuffle(torch.cat([keep, branch], 1))


def shuffle_unit(c: int) -> nn.Graph:
    h = c // 2
    g = nn.Graph(inputs="x")
    g.add("split", nn.Split(h), "x")
    g.add("pw1", nn.Conv2d(h, h, 1, bias=False, **D), "split:1")
    g.add("bn1", nn.BatchNorm2d(h, **D), "pw1").add("relu1", nn.ReLU(), "bn1")
    g.add("dw", nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False, **D), "relu1")
    g.add("bn2", nn.BatchNorm2d(h, **D), "dw")
    g.add("pw2", nn.Conv2d(h, h, 1, bias=False, **D), "bn2")
    g.add("bn3", nn.BatchNorm2d(h, **D), "pw2").add("relu2", nn.ReLU(), "bn3")
    g.add("cat", nn.Concat(), "split:0", "relu2")
    g.add("shuffle", nn.ChannelShuffle(2), "cat")
    return g.outputs("shuffle")


class TorchInception(tnn.Module):
    """Four parallel branches over one input (1x1; 1x1-3x3; 1x1-5x5; pool-1x1), joined."""

    def __init__(self, c: int):
        super().__init__()
        self.b1 = tnn.Conv2d(c, 2, 1)
        self.b2_reduce, self.b2 = tnn.Conv2d(c, 2, 1), tnn.Conv2d(2, 3, 3, padding=1)
        self.b3_reduce, self.b3 = tnn.Conv2d(c, 1, 1), tnn.Conv2d(1, 2, 5, padding=2)
        self.pool, self.b4 = tnn.MaxPool2d(3, stride=1, padding=1), tnn.Conv2d(c, 2, 1)

    def forward(self, x):
        b2 = self.b2(torch.relu(self.b2_reduce(x)))
        b3 = self.b3(torch.relu(self.b3_reduce(x)))
        return torch.relu(torch.cat([self.b1(x), b2, b3, self.b4(self.pool(x))], 1))


def inception(c: int) -> nn.Graph:
    g = nn.Graph(inputs=["x"])
    g.add("b1", nn.Conv2d(c, 2, 1, **D), "x")
    g.add("b2_reduce", nn.Conv2d(c, 2, 1, **D), "x").add("r2", nn.ReLU(), "b2_reduce")
    g.add("b2", nn.Conv2d(2, 3, 3, padding=1, **D), "r2")
    g.add("b3_reduce", nn.Conv2d(c, 1, 1, **D), "x").add("r3", nn.ReLU(), "b3_reduce")
    g.add("b3", nn.Conv2d(1, 2, 5, padding=2, **D), "r3")
    g.add("pool", nn.MaxPool2d(3, stride=1, padding=1), "x")
    g.add("b4", nn.Conv2d(c, 2, 1, **D), "pool")
    g.add("cat", nn.Concat(), "b1", "b2", "b3", "b4").add("relu", nn.ReLU(), "cat")
    return g.outputs("relu")


@pytest.mark.parametrize(
    ("build", "reference", "shape"),
    [
        (lambda: dense_block(3, 2), lambda: TorchDenseBlock(3, 2), (2, 3, 5, 5)),
        (lambda: shuffle_unit(6), lambda: TorchShuffleUnit(6), (2, 6, 4, 5)),
        (lambda: inception(3), lambda: TorchInception(3), (2, 3, 6, 5)),
    ],
    ids=["densenet_block", "shufflenet_unit", "inception_block"],
)
def test_graph_equals_torch(build, reference, shape, rng):
    torch.manual_seed(0)
    compare_with_torch(build(), reference(), [rng.standard_normal(shape)], rng)


def test_graph_eval_mode_and_gradcheck(rng):
    g = dense_block(2, 2)
    x = rng.standard_normal((2, 2, 4, 4))
    g(x)
    g.backward(np.ones((2, 6, 4, 4)))
    g.eval()
    assert not any(m.training for m in g.modules())
    assert_gradcheck(g, x, max_per_array=15)


class TorchTwoInOut(tnn.Module):
    """Two inputs, two outputs; conv's output is read three times (fan-out)."""

    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(2, 2, 3, padding=1)
        self.up = tnn.Upsample(scale_factor=2, mode="bilinear")

    def forward(self, a, b):
        c = self.conv(a)
        return torch.cat([c, c], 1), self.up(c) + b


def two_in_out() -> nn.Graph:
    g = nn.Graph(inputs=["a", "b"])
    g.add("sum", nn.Add(), "up", "b")  # nodes may name nodes added later
    g.add("conv", nn.Conv2d(2, 2, 3, padding=1, **D), "a")
    g.add("twice", nn.Concat(), "conv", "conv")
    g.add("up", nn.Upsample(scale_factor=2, mode="bilinear"), "conv")
    return g.outputs("twice", "sum")


def test_several_inputs_outputs_and_fan_out_equal_torch(rng):
    a, b = rng.standard_normal((2, 2, 3, 3)), rng.standard_normal((1, 2, 6, 1))
    compare_with_torch(two_in_out(), TorchTwoInOut(), [a, b], rng)


def test_fan_out_gradients_add_up(rng):
    g = nn.Graph(inputs="x").add("relu", nn.ReLU(), "x").add("sum", nn.Add(), "relu", "relu", "x")
    g.outputs("sum")
    x = rng.standard_normal((3, 4))
    np.testing.assert_array_equal(g(x), 2 * np.maximum(x, 0) + x)
    dout = rng.standard_normal((3, 4))
    np.testing.assert_array_equal(g.backward(dout), 2 * dout * (x > 0) + dout)


def test_output_gradients_none_and_unused_input_get_zeros(rng):
    g = nn.Graph(inputs=["a", "unused"]).add("relu", nn.ReLU(), "a")
    g.add("split", nn.Split([1, 2]), "relu").outputs("split:1", "a")
    a = rng.standard_normal((2, 3))
    piece, same = g(a, np.ones(5))
    np.testing.assert_array_equal(piece, np.maximum(a[:, 1:], 0))
    assert same is a
    da, dunused = g.backward((np.ones((2, 2)), None))
    np.testing.assert_array_equal(da, np.c_[np.zeros(2), np.ones((2, 2)) * (a[:, 1:] > 0)])
    np.testing.assert_array_equal(dunused, np.zeros(5))


def test_nodes_no_output_needs_are_not_run(rng):
    class Fails(nn.Module):
        def forward(self, x):
            raise AssertionError("ran")

    g = nn.Graph().add("dead", Fails(), "x").add("relu", nn.ReLU(), "x").outputs("relu")
    x = rng.standard_normal((2, 2))
    np.testing.assert_array_equal(g(x), np.maximum(x, 0))
    np.testing.assert_array_equal(g.backward(np.ones((2, 2))), x > 0)


def test_calling_a_graph_twice_shares_its_weights(rng):
    torch.manual_seed(0)
    reference = TorchInception(2).double()
    g = inception(2)
    g.load_state_dict({k: v.numpy() for k, v in reference.state_dict().items()})
    x1, x2 = rng.standard_normal((1, 2, 4, 4)), rng.standard_normal((2, 2, 3, 3))
    d1, d2 = rng.standard_normal((1, 9, 4, 4)), rng.standard_normal((2, 9, 3, 3))
    y1, y2 = g(x1), g(x2)
    dx2, dx1 = g.backward(d2), g.backward(d1)
    t1, t2 = to_torch([x1, x2])
    torch.autograd.backward(
        [reference(t1), reference(t2)], [torch.from_numpy(d1), torch.from_numpy(d2)]
    )
    np.testing.assert_allclose(dx1, t1.grad.numpy(), **F64)
    np.testing.assert_allclose(dx2, t2.grad.numpy(), **F64)
    ours = dict(g.named_parameters())
    for name, p in reference.named_parameters():
        np.testing.assert_allclose(ours[name].grad, p.grad.numpy(), err_msg=name, **F64)
    assert y1.shape == (1, 9, 4, 4) and y2.shape == (2, 9, 3, 3)


def test_graph_registers_nodes_as_children():
    g = shuffle_unit(4)
    assert [name for name, _ in g.named_modules()][:3] == ["", "split", "pw1"]
    assert g.pw1 is dict(g.named_modules())["pw1"]
    assert g.input_names == ("x",) and g.output_names == ("shuffle",)
    assert repr(g).startswith("Graph(inputs=['x'], outputs=['shuffle']\n  (split): Split(")
    rows = trace(g, (4, 3, 3), infer=False).rows
    assert rows[0].output_shape == ((1, 2, 3, 3), (1, 2, 3, 3))
    table = summary(g, (4, 3, 3))
    assert "split" in table and "(None, 2, 3, 3), (None, 2, 3, 3)" in table
    assert f"Trainable params: {g.num_parameters():,}" in table


def test_no_grad_forward_keeps_nothing(rng):
    g = dense_block(2, 1)
    with cnnkit.no_grad():
        g(rng.standard_normal((1, 2, 3, 3)))
    with pytest.raises(RuntimeError, match="Graph.backward called after a forward pass under"):
        g.backward(np.ones((1, 4, 3, 3)))


@SETTINGS
@given(
    st.lists(st.integers(0, 3), min_size=1, max_size=4),
    st.lists(st.integers(1, 3), min_size=1, max_size=3),
    st.integers(0, 3),
    st.integers(0, 2**16),
)
def test_concat_and_split_equal_torch(lengths, others, axis_seed, seed):
    rng = np.random.default_rng(seed)
    axis = axis_seed % (len(others) + 1)
    shapes = [(*others[:axis], n, *others[axis:]) for n in lengths]
    xs = [rng.standard_normal(s) for s in shapes]
    dim = axis - (len(others) + 1) if seed % 2 else axis
    out, cache = F.concat(xs, dim)
    leaves = to_torch(xs)
    theirs = torch.cat(leaves, dim)
    np.testing.assert_array_equal(out, theirs.detach().numpy())
    dout = rng.standard_normal(out.shape)
    theirs.backward(torch.from_numpy(dout))
    for dx, leaf in zip(F.concat_backward(dout, cache), leaves, strict=True):
        np.testing.assert_array_equal(dx, leaf.grad.numpy())

    size = max(1, lengths[0])
    for sections in (size, lengths):
        pieces, cache = F.split(out, sections, dim)
        t = torch.from_numpy(out).requires_grad_()
        expected = torch.split(t, sections, dim)
        assert len(pieces) == len(expected)
        douts = [None if i % 2 else rng.standard_normal(p.shape) for i, p in enumerate(pieces)]
        for piece, want in zip(pieces, expected, strict=True):
            np.testing.assert_array_equal(piece, want.detach().numpy())
        pairs = [
            (e, torch.from_numpy(d)) for e, d in zip(expected, douts, strict=True) if d is not None
        ]
        torch.autograd.backward([e for e, _ in pairs], [d for _, d in pairs])
        np.testing.assert_array_equal(F.split_backward(douts, cache), t.grad.numpy())


@SETTINGS
@given(st.lists(st.integers(1, 3), min_size=1, max_size=4), st.integers(0, 2**16))
def test_add_broadcasts_as_torch(shape, seed):
    rng = np.random.default_rng(seed)
    shapes = [tuple(shape)]
    for _ in range(2):
        keep = rng.integers(0, 2, len(shape)).astype(bool)
        drop = rng.integers(0, len(shape) + 1)
        shapes.append(tuple(n if k else 1 for n, k in zip(shape, keep, strict=True))[drop:])
    xs = [rng.standard_normal(s) for s in shapes]
    layer = nn.Add()
    out = layer(*xs)
    leaves = to_torch(xs)
    theirs = leaves[0] + leaves[1] + leaves[2]
    np.testing.assert_allclose(out, theirs.detach().numpy(), **F64)
    dout = rng.standard_normal(out.shape)
    theirs.backward(torch.from_numpy(dout))
    for dx, leaf in zip(layer.backward(dout), leaves, strict=True):
        np.testing.assert_allclose(dx, leaf.grad.numpy(), **F64)


def test_join_modules_take_lists_and_show_their_arguments(rng):
    a, b = rng.standard_normal((2, 1)), rng.standard_normal((2, 3))
    cat = nn.Concat(dim=-1)
    np.testing.assert_array_equal(cat([a, b]), np.c_[a, b])
    da, db = cat.backward(np.arange(8.0).reshape(2, 4))
    np.testing.assert_array_equal(da, [[0], [4]])
    split = nn.Split([1, 3], dim=-1)
    assert [p.shape for p in split(np.c_[a, b])] == [(2, 1), (2, 3)]
    assert repr(cat) == "Concat(dim=-1)"
    assert repr(split) == "Split(split_size_or_sections=(1, 3), dim=-1)"
    assert repr(nn.Add()) == "Add()"


class OneGradient(nn.Module):
    def forward(self, a, b):
        return a + b

    def backward(self, dout):
        return dout


def graph(*nodes, outputs=None) -> nn.Graph:
    """A graph on input "x" with the given (name, module, *inputs) nodes and outputs."""
    g = nn.Graph(inputs="x")
    for node in nodes:
        g.add(*node)
    return g.outputs(*outputs) if outputs else g


def shared_module() -> nn.Graph:
    relu = nn.ReLU()
    return graph(("a", relu, "x"), ("b", relu, "a"))


def run(g: nn.Graph, x: np.ndarray, dout):
    g(x)
    return g.backward(dout)


def error_cases():
    relu = nn.ReLU
    x = np.zeros((2, 4))
    return [
        (
            lambda: graph(("cat", nn.Concat(), "x", "cnv"), outputs=["cat"]),
            ValueError,
            r"Graph node 'cat' takes input 'cnv', which is neither a node \(cat\) nor a graph "
            r"input \(x\)",
        ),
        (
            lambda: graph(("a", relu(), "x"), outputs=["b"]),
            ValueError,
            "Graph output 'b' is neither a node nor a graph input",
        ),
        (
            lambda: graph(("a", relu(), "b"), ("b", relu(), "a"), outputs=["b"]),
            ValueError,
            "Graph has a cycle: a -> b -> a",
        ),
        (
            lambda: graph(("o", relu(), "x"), ("a", relu(), "a"), outputs=["o"]),
            ValueError,
            "Graph has a cycle: a -> a",
        ),
        (
            lambda: graph(("a", relu(), "x"), ("a", relu(), "x")),
            ValueError,
            "Graph already has a node named 'a'",
        ),
        (
            lambda: graph(("x", relu(), "x")),
            ValueError,
            "Graph node name 'x' is already a graph input",
        ),
        (
            lambda: graph(("conv.1", relu(), "x")),
            ValueError,
            "Graph node name must be an identifier, got 'conv.1'",
        ),
        (
            lambda: graph(("forward", relu(), "x")),
            ValueError,
            "Graph node name 'forward' is taken by a Graph attribute",
        ),
        (
            lambda: graph(("a", np.tanh, "x")),
            TypeError,
            "Graph node 'a' must be a Module, got ufunc",
        ),
        (shared_module, ValueError, "Graph node 'b' is the same module object as node 'a'"),
        (lambda: graph(("a", relu())), ValueError, "Graph node 'a' needs at least one input name"),
        (
            lambda: graph(("a", relu(), "s:first")),
            ValueError,
            "Graph input name 's:first' must be 'node' or 'node:i' with i a piece index",
        ),
        (lambda: graph(("a", relu(), 3)), TypeError, "Graph input names must be strings, got 3"),
        (
            lambda: nn.Graph(inputs=["a", "a"]),
            ValueError,
            r"Graph inputs must be distinct names, at least one, got \['a', 'a'\]",
        ),
        (lambda: nn.Graph(inputs=[]), ValueError, "Graph inputs must be distinct names"),
        (lambda: nn.Graph().outputs(), ValueError, "Graph outputs needs at least one name"),
        (
            lambda: graph(("a", relu(), "x"))(x),
            RuntimeError,
            r"Graph has no outputs; call outputs\(name, ...\) before forward",
        ),
        (
            lambda: graph(("a", relu(), "x"), outputs=["a"])(x, x),
            ValueError,
            r"Graph expected 1 input array\(s\) \(x\), got 2",
        ),
        (
            lambda: graph(("s", nn.Split(2), "x"), ("a", relu(), "s"), outputs=["a"])(x),
            ValueError,
            "Graph node 'a' takes 's', which returned 2 arrays; name one of them as 's:0'",
        ),
        (
            lambda: graph(("a", relu(), "x:0"), outputs=["a"])(x),
            ValueError,
            "Graph node 'a' takes 'x:0', but 'x' returned one array",
        ),
        (
            lambda: graph(("s", nn.Split(2), "x"), outputs=["s:2"])(x),
            ValueError,
            "Graph output takes 's:2', but 's' returned 2 arrays",
        ),
        (
            lambda: run(graph(("a", relu(), "x"), outputs=["a", "x"]), x, x),
            ValueError,
            r"Graph.backward expected 2 output gradient\(s\) \(for a, x\), got 1",
        ),
        (
            lambda: run(graph(("t", OneGradient(), "x", "x"), outputs=["t"]), x, x),
            ValueError,
            r"Graph node 't' \(OneGradient\) backward returned 1 gradient\(s\) for 2 "
            "inputs",
        ),
        (lambda: F.concat([]), ValueError, "concat expected at least one array, got none"),
        (
            lambda: F.concat([x, [1.0]]),
            TypeError,
            "concat expected numpy.ndarray inputs, got list at 1",
        ),
        (
            lambda: F.concat([x, x.astype(np.float32)]),
            TypeError,
            "concat expected all arrays to share one dtype, got input 0 float64, input 1 float32",
        ),
        (
            lambda: F.concat([x, x.astype(int)]),
            TypeError,
            "concat expected input 1 of dtype float32 or float64, got int64",
        ),
        (
            lambda: F.concat([x, np.zeros((3, 4))], dim=1),
            ValueError,
            r"concat expected every input to match input 0 \(2, 4\) outside dim 1, got "
            r"\(3, 4\) at 1",
        ),
        (
            lambda: F.concat([x, x], dim=2),
            ValueError,
            r"concat dim must be in \[-2, 1\] for 2-D "
            "input, got 2",
        ),
        (lambda: F.concat([x], dim=1.0), TypeError, "concat dim must be an int, got 1.0"),
        (
            lambda: F.split(x, [1, 2]),
            ValueError,
            r"split sections \[1, 2\] add up to 3, but the axis has length 4",
        ),
        (lambda: F.split(x, 0), ValueError, "split split_size must be >= 1, got 0"),
        (
            lambda: nn.Split("2"),
            TypeError,
            "Split split_size_or_sections must be an int or a list of non-negative ints, got '2'",
        ),
        (
            lambda: F.split_backward([None], F.split(x, 2)[1]),
            ValueError,
            r"split backward expected 2 gradients \(one per piece\), got 1",
        ),
        (
            lambda: F.split_backward([x, None], F.split(x, 2)[1]),
            ValueError,
            r"split backward expected a gradient of shape \(2, 2\), got \(2, 4\)",
        ),
        (
            lambda: F.add([x, np.zeros(3)]),
            ValueError,
            r"add expected shapes that broadcast together, got \[\(2, 4\), \(3,\)\]",
        ),
    ]


@pytest.mark.parametrize(("call", "error", "match"), error_cases())
def test_error_messages(call, error, match):
    with pytest.raises(error, match=match):
        call()
