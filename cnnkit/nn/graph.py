"""Graph: a container for networks that are not a chain (DenseNet, Inception, ShuffleNet, U-Net)."""

from __future__ import annotations

import numpy as np

from cnnkit.nn.module import CachedModule, Module

Ref = tuple[str, int | None]
"""A value of the graph: (node or graph-input name, piece index for a tuple output or None)."""


def _parse(reference) -> Ref:
    if not isinstance(reference, str):
        raise TypeError(f"Graph input names must be strings, got {reference!r}")
    name, colon, index = reference.partition(":")
    if not colon:
        return name, None
    if not index.isdigit():
        raise ValueError(
            f"Graph input name {reference!r} must be 'node' or 'node:i' with i a piece index"
        )
    return name, int(index)


def _show(ref: Ref) -> str:
    return ref[0] if ref[1] is None else f"{ref[0]}:{ref[1]}"


def _zeros_like(value):
    """Zeros of the value's shape and dtype as a broadcast view (no memory); a list for pieces."""
    if isinstance(value, tuple):
        return [_zeros_like(v) for v in value]
    value = np.asarray(value)
    return np.broadcast_to(np.zeros((), value.dtype), value.shape)


class Graph(CachedModule):
    """A directed acyclic graph of named modules, run in topological order (torch.fx, Keras'
    functional Model); backward runs it in reverse and adds up the gradients of shared values.

    Build it by naming the graph inputs, adding nodes, and naming the outputs::

        g = Graph(inputs=["x"])
        g.add("conv", Conv2d(3, 8, 3, padding=1), "x")
        g.add("relu", ReLU(), "conv")
        g.add("cat", Concat(), "relu", "x")     # DenseNet: the input joins the features
        g.outputs("cat")
        y = g(x)                                 # (N, 11, H, W)
        dx = g.backward(dy)                      # conv's weight.grad accumulates

    - ``add(name, module, *inputs)`` adds a node whose module is called as
      ``module(*values)`` on the named values: graph inputs or other nodes (added before or
      after; the order is resolved when ``outputs`` is called). A node whose module returns a
      tuple (Split) is referred to one piece at a time, as ``"split:0"``, ``"split:1"``.
    - The node's module becomes a child named ``name``, so parameters, state_dict ("conv.weight"),
      train/eval, repr and summary see it. A name is an identifier, not a graph input, not
      another node and not a Graph attribute; one module object cannot be two nodes (call the
      whole Graph twice to share weights).
    - ``outputs(*names)`` sets the outputs and checks the graph: every name known, no cycle.
      Nodes that no output depends on are not run.
    - ``forward(*arrays)`` takes one array per graph input and returns the output (a tuple when
      there are several). ``backward(dout)`` takes the output gradient (a tuple of them, None for
      an output that got none) and returns dL/d(input) (a tuple for several inputs, zeros for an
      input no output depends on). A node with several inputs returns one gradient per input
      from its backward (a tuple); a node used by several nodes gets the sum of their gradients;
      a tuple-output node gets a tuple of piece gradients, None for pieces that got none.
    """

    def __init__(self, inputs=("x",)):
        super().__init__()
        names = [inputs] if isinstance(inputs, str) else list(inputs)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"Graph inputs must be distinct names, at least one, got {inputs!r}")
        for name in names:
            self._check_name(name, "input")
        self._input_names = tuple(names)
        self._node_inputs: dict[str, tuple[Ref, ...]] = {}
        self._output_refs: tuple[Ref, ...] = ()
        self._order: tuple[str, ...] | None = None

    @property
    def input_names(self) -> tuple[str, ...]:
        """The graph inputs, in the order forward takes them."""
        return self._input_names

    @property
    def output_names(self) -> tuple[str, ...]:
        """The graph outputs, in the order forward returns them."""
        return tuple(_show(ref) for ref in self._output_refs)

    def _check_name(self, name, what: str) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"Graph {what} name must be an identifier, got {name!r}")
        if name in self.__dict__.get("_node_inputs", {}):
            raise ValueError(f"Graph already has a node named {name!r}")
        if name in self.__dict__.get("_input_names", ()):
            raise ValueError(f"Graph node name {name!r} is already a graph input")
        if hasattr(self, name):
            raise ValueError(f"Graph {what} name {name!r} is taken by a Graph attribute")

    def add(self, name: str, module: Module, *inputs: str) -> Graph:
        """Add node ``name`` computing ``module(*inputs)``; returns the graph (calls chain)."""
        self._check_name(name, "node")
        if not isinstance(module, Module):
            raise TypeError(f"Graph node {name!r} must be a Module, got {type(module).__name__}")
        for other, child in self._modules.items():
            if child is module:
                raise ValueError(f"Graph node {name!r} is the same module object as node {other!r}")
        if not inputs:
            raise ValueError(f"Graph node {name!r} needs at least one input name")
        self._node_inputs[name] = tuple(_parse(reference) for reference in inputs)
        setattr(self, name, module)
        self._order = None
        return self

    def outputs(self, *names: str) -> Graph:
        """Name the graph outputs and check the graph (known names, no cycle)."""
        if not names:
            raise ValueError("Graph outputs needs at least one name")
        self._output_refs = tuple(_parse(name) for name in names)
        self._order = None
        self._plan()
        return self

    def _plan(self) -> tuple[str, ...]:
        """The nodes the outputs need, dependencies first (insertion order among equals)."""
        if self._order is not None:
            return self._order
        if not self._output_refs:
            raise RuntimeError("Graph has no outputs; call outputs(name, ...) before forward")
        known = set(self._node_inputs) | set(self._input_names)
        for name, refs in self._node_inputs.items():
            for ref in refs:
                if ref[0] not in known:
                    raise ValueError(
                        f"Graph node {name!r} takes input {_show(ref)!r}, which is neither a "
                        f"node ({', '.join(self._node_inputs)}) nor a graph input "
                        f"({', '.join(self._input_names)})"
                    )
        for ref in self._output_refs:
            if ref[0] not in known:
                raise ValueError(f"Graph output {_show(ref)!r} is neither a node nor a graph input")
        done, order = set(self._input_names), []
        pending = list(self._node_inputs)
        while pending:
            ready = next(
                (n for n in pending if all(r[0] in done for r in self._node_inputs[n])), None
            )
            if ready is None:
                raise ValueError(f"Graph has a cycle: {' -> '.join(self._cycle(pending))}")
            pending.remove(ready)
            done.add(ready)
            order.append(ready)
        needed = {ref[0] for ref in self._output_refs}
        for name in reversed(order):
            if name in needed:
                needed.update(ref[0] for ref in self._node_inputs[name])
        self._order = tuple(name for name in order if name in needed)
        return self._order

    def _cycle(self, pending: list[str]) -> list[str]:
        """A cycle among the nodes that never became ready, as a path of names."""
        path, name = [], pending[0]
        while name not in path:
            path.append(name)
            name = next(r[0] for r in self._node_inputs[name] if r[0] in pending)
        return [*path[path.index(name) :], name]

    def forward(self, *arrays: np.ndarray):
        """Run the needed nodes in topological order on one array per graph input."""
        order = self._plan()
        if len(arrays) != len(self._input_names):
            raise ValueError(
                f"Graph expected {len(self._input_names)} input array(s) "
                f"({', '.join(self._input_names)}), got {len(arrays)}"
            )
        values = dict(zip(self._input_names, arrays, strict=True))
        for name in order:
            where = f"Graph node {name!r}"
            args = [self._value(values, ref, where) for ref in self._node_inputs[name]]
            values[name] = self._modules[name](*args)
        outputs = tuple(self._value(values, ref, "Graph output") for ref in self._output_refs)
        self._cache = {name: _zeros_like(value) for name, value in values.items()}
        return outputs[0] if len(outputs) == 1 else outputs

    @staticmethod
    def _value(values: dict, ref: Ref, where: str):
        name, index = ref
        value = values[name]
        pieces = isinstance(value, tuple)
        if index is None and pieces:
            raise ValueError(
                f"{where} takes {name!r}, which returned {len(value)} arrays; name one of them "
                f"as {name + ':0'!r}"
            )
        if index is None:
            return value
        if not pieces:
            raise ValueError(f"{where} takes {_show(ref)!r}, but {name!r} returned one array")
        if index >= len(value):
            raise ValueError(
                f"{where} takes {_show(ref)!r}, but {name!r} returned {len(value)} arrays"
            )
        return value[index]

    def backward(self, dout):
        """Run the nodes' backward in reverse order; return dL/d(each graph input)."""
        zeros = self._take_cache()
        douts = dout if isinstance(dout, (tuple, list)) else (dout,)
        if len(douts) != len(self._output_refs):
            raise ValueError(
                f"Graph.backward expected {len(self._output_refs)} output gradient(s) (for "
                f"{', '.join(self.output_names)}), got {len(douts)}"
            )
        grads: dict[Ref, np.ndarray] = {}

        def accumulate(ref: Ref, grad) -> None:
            if grad is not None:
                grads[ref] = grad if ref not in grads else grads[ref] + grad

        for ref, grad in zip(self._output_refs, douts, strict=True):
            accumulate(ref, grad)
        for name in reversed(self._order):
            if isinstance(zeros[name], list):
                grad = tuple(grads.pop((name, i), None) for i in range(len(zeros[name])))
            else:
                grad = grads.pop((name, None), None)
                grad = zeros[name].copy() if grad is None else grad
            refs = self._node_inputs[name]
            dxs = self._modules[name].backward(grad)
            if len(refs) == 1 and not isinstance(dxs, tuple):
                dxs = (dxs,)
            if not isinstance(dxs, tuple) or len(dxs) != len(refs):
                count = len(dxs) if isinstance(dxs, tuple) else 1
                raise ValueError(
                    f"Graph node {name!r} ({type(self._modules[name]).__name__}) backward "
                    f"returned {count} gradient(s) for {len(refs)} inputs"
                )
            for ref, dx in zip(refs, dxs, strict=True):
                accumulate(ref, dx)
        dxs = tuple(grads.get((name, None), zeros[name].copy()) for name in self._input_names)
        return dxs[0] if len(dxs) == 1 else dxs

    def extra_repr(self) -> str:
        return f"inputs={list(self._input_names)}, outputs={list(self.output_names)}"
