"""Dotted names for the imported layers, so that state_dict keys read like the source model's.

A layer that holds initializers named ``P.weight``, ``P.bias`` (``P.`` followed by the names
of the layer's own parameters and buffers) is named ``P``: a torch model exported without
constant folding of its weights comes back with torch's state_dict keys ("layer1.0.conv1.weight").
Any other layer is named after its node: torch names nodes by module scope,
"/layer1/layer1.0/relu/Relu" for the ReLU of module layer1.0.relu, and the scope's components
are merged into one path ("layer1.0.relu"). A scope that holds several layers (the Add of a
residual block beside its convolutions) names each by the scope and the op
("layer1.0.Add"). Nodes without a name are named after their op and position ("relu_3").
Names taken from initializers are placed first; clashes get a suffix ("_1"), or are flattened
("0_Pad" beside the convolution "0"), so every layer has its own name and no name is another's
prefix.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

_UNSAFE = re.compile(r"[^0-9A-Za-z_:\-]+")


@dataclass(frozen=True)
class LayerName:
    """What names a layer: its node's name, op and index, the initializers it holds by name."""

    node_name: str
    op_type: str
    index: int
    held: tuple[tuple[str, str], ...]  # (initializer name, the layer's attribute holding it)


def _component(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_")


def scope_path(node_name: str) -> tuple[str, str]:
    """(merged module scope, last component) of a torch-style node name "/a/a.0/b/Op"."""
    parts = [p for p in node_name.split("/") if p]
    if not parts:
        return "", ""
    path = ""
    for part in parts[:-1]:
        if path and part.startswith(path + "."):
            path = part
        else:
            path = f"{path}.{part}" if path else part
    return path, parts[-1]


def _clean(path: str) -> str:
    return ".".join(c for c in (_component(p) for p in path.split(".")) if c)


def _by_initializers(layer: LayerName) -> str | None:
    prefixes = set()
    for initializer, attribute in layer.held:
        if not initializer.endswith("." + attribute):
            return None
        prefixes.add(initializer[: -len(attribute) - 1])
    if len(prefixes) != 1:
        return None
    path = prefixes.pop()
    return path if path and _clean(path) == path else None


def layer_paths(layers: Sequence[LayerName]) -> list[str]:
    """A distinct dotted name for each layer (module docstring), none a prefix of another."""
    wanted: list[str | None] = [_by_initializers(layer) for layer in layers]
    first = [i for i, path in enumerate(wanted) if path] + [
        i for i, p in enumerate(wanted) if not p
    ]
    scopes = [scope_path(layer.node_name) for layer in layers]
    shared = Counter(_clean(scope) for scope, _ in scopes if scope)
    inner = _proper_prefixes([p for p in wanted if p] + list(shared))
    for i, layer in enumerate(layers):
        if wanted[i]:
            continue
        scope, last = (_clean(s) for s in scopes[i])
        if not scope and not last:
            wanted[i] = f"{layer.op_type.lower()}_{layer.index}"
        elif not scope:
            wanted[i] = last
        elif shared[scope] == 1 and scope not in inner:
            wanted[i] = scope
        else:
            wanted[i] = f"{scope}.{last}"
    distinct = dict(zip(first, _distinct([wanted[i] for i in first]), strict=True))
    return [distinct[i] for i in range(len(layers))]


def _proper_prefixes(paths) -> set[str]:
    parts = (path.split(".") for path in paths)
    return {".".join(p[:j]) for p in parts for j in range(1, len(p))}


def _distinct(paths: Sequence[str]) -> list[str]:
    """The paths made distinct: a suffix for a repeat, flattened ("a_b") under another's leaf."""
    used: set[str] = set()
    inner: set[str] = set()
    result = []
    for path in paths:
        if any(p in used for p in _proper_prefixes([path])):
            path = path.replace(".", "_")
        candidate, k = path, 0
        while candidate in used or candidate in inner:
            k += 1
            candidate = f"{path}_{k}"
        used.add(candidate)
        inner.update(_proper_prefixes([candidate]))
        result.append(candidate)
    return result
