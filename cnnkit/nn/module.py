"""Parameter and Module: the state every layer shares (as torch.nn.Parameter, torch.nn.Module)."""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Iterator, Mapping

import numpy as np

from cnnkit.nn.grad_mode import is_grad_enabled

DTYPES = (np.float32, np.float64)


def check_dtype(dtype) -> np.dtype:
    """Return ``dtype`` as a NumPy dtype if it is float32 or float64; raise otherwise."""
    resolved = np.dtype(dtype)
    if resolved not in DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {resolved}")
    return resolved


class Parameter:
    """A trainable array ``data`` and the gradient ``grad`` that backward passes accumulate into."""

    def __init__(self, data: np.ndarray):
        self.data = np.asarray(data)
        self.grad = np.zeros_like(self.data)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    def zero_grad(self) -> None:
        """Set the gradient to zero in place."""
        self.grad.fill(0)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class of layers and models: forward, backward, parameters, state dicts, modes.

    Assigning a Parameter or a Module to an attribute registers it, in assignment order, so
    ``named_parameters`` and ``state_dict`` use the same dotted names as PyTorch.
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise RuntimeError(
                f"{type(self).__name__}.__init__ must call super().__init__() before assigning "
                f"attribute {name!r}"
            )
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        for registry in ("_parameters", "_buffers", "_modules"):
            found = self.__dict__.get(registry, {})
            if name in found:
                return found[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    optional_state: tuple[str, ...] = ()
    """Buffer names that a plain-dict state may leave out in load_state_dict (torch's rule)."""

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """Register a non-trainable array (e.g. batch norm's running mean) saved in state_dict."""
        self.__dict__.pop(name, None)
        self._buffers[name] = value

    def forward(self, *args, **kwargs):
        """Compute the output and remember what ``backward`` needs."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Given dL/d(output), accumulate parameter gradients and return dL/d(input)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """Yield (dotted name, module) for this module and every descendant, depth first."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        """Yield this module and every descendant."""
        for _, module in self.named_modules():
            yield module

    def children(self) -> Iterator[Module]:
        """Yield the direct sub-modules."""
        yield from self._modules.values()

    def _named_members(self, registry: str) -> Iterator[tuple[str, object]]:
        for prefix, module in self.named_modules():
            for name, value in getattr(module, registry).items():
                yield (f"{prefix}.{name}" if prefix else name), value

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """Yield (dotted name, Parameter) for every trainable parameter."""
        yield from self._named_members("_parameters")

    def parameters(self) -> list[Parameter]:
        """All trainable parameters, in registration order."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self) -> Iterator[tuple[str, np.ndarray]]:
        """Yield (dotted name, array) for every buffer."""
        yield from self._named_members("_buffers")

    def named_generators(self) -> Iterator[tuple[str, np.random.Generator]]:
        """Yield (dotted name, Generator) of every module with its own random numbers (Dropout)."""
        for name, module in self.named_modules():
            rng = module.__dict__.get("rng")
            if isinstance(rng, np.random.Generator):
                yield name, rng

    def num_parameters(self) -> int:
        """Total number of trainable scalars."""
        return sum(p.size for p in self.parameters())

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of every parameter and buffer under PyTorch's dotted names."""
        state = OrderedDict()
        for prefix, module in self.named_modules():
            for name, p in module._parameters.items():
                state[f"{prefix}.{name}" if prefix else name] = p.data.copy()
            for name, b in module._buffers.items():
                state[f"{prefix}.{name}" if prefix else name] = np.array(b, copy=True)
        return state

    def _state_targets(self) -> OrderedDict[str, tuple[Module, str, np.ndarray]]:
        targets = OrderedDict()
        for prefix, module in self.named_modules():
            for registry in (module._parameters, module._buffers):
                for name, value in registry.items():
                    array = value.data if isinstance(value, Parameter) else value
                    targets[f"{prefix}.{name}" if prefix else name] = (module, name, array)
        return targets

    def load_state_dict(self, state: Mapping[str, np.ndarray], strict: bool = True) -> None:
        """Copy arrays into the parameters and buffers of the same name, checking every shape.

        As torch, a mapping without torch's ``_metadata`` (a plain dict) may leave out the
        buffers a module lists in ``optional_state`` (batch norm's num_batches_tracked), which
        then keep their value; a torch state_dict of version 2 or later may not.
        """
        targets = self._state_targets()
        versioned = hasattr(state, "_metadata")
        if strict:
            missing = [
                k
                for k, (module, name, _) in targets.items()
                if k not in state and (versioned or name not in module.optional_state)
            ]
            unexpected = [k for k in state if k not in targets]
            if missing or unexpected:
                raise ValueError(
                    f"load_state_dict key mismatch for {type(self).__name__}: "
                    f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                    f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
                )
        for key, (_, _, target) in targets.items():
            if key in state and np.shape(state[key]) != target.shape:
                raise ValueError(
                    f"load_state_dict entry {key!r} has shape {np.shape(state[key])}, "
                    f"expected {target.shape}"
                )
        for key, (_, _, target) in targets.items():
            if key in state:
                np.copyto(target, np.asarray(state[key]), casting="unsafe")

    def train(self, mode: bool = True) -> Module:
        """Switch this module and its descendants to training (or eval) mode."""
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        """Switch to evaluation mode (running batch-norm statistics, no dropout)."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Reset every parameter gradient to zero."""
        for p in self.parameters():
            p.zero_grad()

    def to(self, dtype) -> Module:
        """Cast every floating parameter and buffer to float32 or float64, in place."""
        dtype = check_dtype(dtype)
        for module in self.modules():
            for p in module._parameters.values():
                p.data = p.data.astype(dtype)
                p.grad = np.zeros_like(p.data)
            for name, b in module._buffers.items():
                if np.issubdtype(b.dtype, np.floating):
                    module._buffers[name] = b.astype(dtype)
            if "dtype" in module.__dict__:
                object.__setattr__(module, "dtype", dtype)
        return self

    def extra_repr(self) -> str:
        """The constructor arguments shown inside this module's repr."""
        return ""

    def __repr__(self) -> str:
        lines = []
        for name, child in self._modules.items():
            child_lines = repr(child).split("\n")
            lines.append(f"  ({name}): " + "\n  ".join(child_lines))
        if not lines:
            return f"{type(self).__name__}({self.extra_repr()})"
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + "\n" + "\n".join(lines) + "\n)"


_DROPPED = object()
"""What ``_cache`` reads after a forward pass under no_grad(): nothing kept, backward says why."""


class _Call:
    """The cache one forward call kept, and whether __call__ added a batch axis to its input."""

    __slots__ = ("cache", "unbatched")

    def __init__(self, cache) -> None:
        self.cache = cache
        self.unbatched = False


def _unbatching(backward):
    """Wrap a subclass's backward so the gradient of an unbatched call loses its batch axis."""

    @functools.wraps(backward)
    def wrapper(self, *args, **kwargs):
        calls = self.__dict__.get("_calls")
        if not calls or not calls[-1].unbatched:
            return backward(self, *args, **kwargs)
        calls[-1].unbatched = False
        dout, *rest = args
        dx = backward(self, np.asarray(dout)[None], *rest, **kwargs)
        return None if dx is None else dx[0]

    return wrapper


class CachedModule(Module):
    """A Module that keeps one cache per forward call until the backward call that uses it.

    A forward call pushes its cache; backward pops the newest one. A module called k times in
    one pass (weight sharing, siamese networks) is backpropagated by k backward calls in the
    reverse order of the forward calls, and its parameter gradients add up, as autograd's do.
    A forward pass under cnnkit.no_grad() keeps nothing and leaves the pending caches alone.
    At most ``max_cached_calls`` caches are kept; older ones are dropped, and a backward call
    that reaches a dropped one says so.

    Subclasses write forward and backward for batched input. With ``batched_ndim`` set, an input
    with one dimension fewer (torch's unbatched form, e.g. (C, H, W) for a 2-D layer) gets a
    batch axis of one in __call__, the output loses it, and backward removes it from dL/dx.
    """

    batched_ndim: int | None = None
    max_cached_calls: int = 64

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "backward" in cls.__dict__:
            cls.backward = _unbatching(cls.__dict__["backward"])

    def __init__(self) -> None:
        super().__init__()
        self._cache = None

    def __call__(self, x, *args, **kwargs):
        unbatched = (
            self.batched_ndim is not None
            and isinstance(x, np.ndarray)
            and x.ndim == self.batched_ndim - 1
        )
        if not unbatched:
            return self.forward(x, *args, **kwargs)
        pushes = self.__dict__.get("_pushes", 0)
        out = self.forward(x[None], *args, **kwargs)
        if self.__dict__.get("_pushes", 0) != pushes:
            self.__dict__["_calls"][-1].unbatched = True
        return tuple(part[0] for part in out) if isinstance(out, tuple) else out[0]

    @property
    def _cache(self):
        """The newest pending cache; _DROPPED after a no_grad() forward with none pending."""
        calls = self.__dict__.get("_calls")
        if calls:
            return calls[-1].cache
        return _DROPPED if self.__dict__.get("_dropped") else None

    @_cache.setter
    def _cache(self, value) -> None:
        if value is None:
            self.__dict__.update(_calls=[], _dropped=False, _lost=0)
            return
        if not is_grad_enabled():
            self.__dict__["_dropped"] = True
            return
        calls = self.__dict__["_calls"]
        calls.append(_Call(value))
        self.__dict__["_pushes"] = self.__dict__.get("_pushes", 0) + 1
        self.__dict__["_dropped"] = False
        if len(calls) > self.max_cached_calls:
            del calls[0]
            self.__dict__["_lost"] += 1

    def _take_cache(self):
        calls = self.__dict__["_calls"]
        if calls:
            return calls.pop().cache
        name = type(self).__name__
        if self.__dict__.get("_lost"):
            self.__dict__["_lost"] -= 1
            raise RuntimeError(
                f"{name}.backward reached a forward call whose cache was dropped: more than "
                f"{self.max_cached_calls} forward calls were made without backward (run "
                "forward passes that need no backward under cnnkit.no_grad())"
            )
        if self.__dict__.get("_dropped"):
            raise RuntimeError(
                f"{name}.backward called after a forward pass under "
                "cnnkit.no_grad(), which keeps nothing for backward"
            )
        raise RuntimeError(f"{name}.backward called before forward")

    def _check_input(self, x) -> None:
        if not isinstance(x, np.ndarray):
            raise TypeError(
                f"{type(self).__name__} expected a numpy.ndarray, got {type(x).__name__}"
            )
        if x.dtype not in DTYPES:
            raise TypeError(
                f"{type(self).__name__} expected input of dtype float32 or float64, got {x.dtype}"
            )
        expected = self.__dict__.get("dtype")
        if expected is not None and x.dtype != expected:
            raise TypeError(
                f"{type(self).__name__} expected input of dtype {np.dtype(expected)}, got "
                f"{x.dtype} (cast the input or call .to(np.{x.dtype.name}) on the model)"
            )
