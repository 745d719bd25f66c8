"""Inference of imported ONNX models: cnnkit.onnx against onnxruntime and onnx's
ReferenceEvaluator, in one process, on the same file and the same arrays.

    python bench/onnx_speed.py                          # resnet18, mobilenet_v2; batch 1, 16
    python bench/onnx_speed.py --models resnet18 --batches 1 --threads 1
    python bench/onnx_speed.py --reference-batches 1    # the reference evaluator is slow

The models are torchvision's architectures with random weights (randomised batch-norm
statistics), exported by torch.onnx at 224 x 224 with a dynamic batch (torchvision's model
definitions are imported without its compiled operators, as the tests do). Each row checks
that cnnkit's logits equal onnxruntime's (rtol 1e-4) before timing; then one warm-up call per
side and the median of ``--repeats`` calls, cnnkit under no_grad. Threads: onnxruntime's
intra-op pool and NumPy's BLAS (threadpoolctl) get ``--threads`` each. The table gives
milliseconds per batch and the ratios cnnkit / onnxruntime and reference / cnnkit.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import statistics
import sys
import time
import types
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

import cnnkit
import cnnkit.onnx


def torchvision_models():
    """torchvision.models without torchvision's compiled operators (built for CUDA torch)."""
    if "torchvision.models" in sys.modules:
        return sys.modules["torchvision.models"]
    spec = importlib.util.find_spec("torchvision")
    if spec is None:
        raise SystemExit("onnx_speed needs torchvision 0.28 (pip install --no-deps torchvision)")
    if "torchvision" not in sys.modules:
        package = types.ModuleType("torchvision")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["torchvision"] = package
    import torchvision.models

    return torchvision.models


def exported(name: str, size: int) -> bytes:
    """``name`` from torchvision with random weights and batch norms, as ONNX bytes."""
    import torch

    torch.manual_seed(0)
    model = getattr(torchvision_models(), name)().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.normal_(1, 0.2)
                m.bias.normal_(0, 0.2)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, size, size),),
            buffer,
            dynamo=False,
            input_names=["x"],
            dynamic_axes={"x": {0: "batch"}},
        )
    return buffer.getvalue()


def median_ms(call, repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet18,mobilenet_v2")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--reference-batches", default="1", help="'' skips the evaluator")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    cnnkit.keep_freed_memory()  # as `cnnkit predict --onnx` does: freed arrays are reused

    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    reference_batches = {int(b) for b in args.reference_batches.split(",") if b}
    print(f"threads {args.threads}, load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
    print("| model | batch | cnnkit ms | onnxruntime ms | reference ms | cnnkit/ort | ref/cnnkit |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        data = exported(name, args.size)
        model = cnnkit.onnx.load(data)
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        reference = ReferenceEvaluator(data)
        for batch in (int(b) for b in args.batches.split(",")):
            x = np.random.default_rng(0).standard_normal((batch, 3, args.size, args.size))
            x = x.astype(np.float32)
            with threadpool_limits(args.threads), cnnkit.no_grad():
                ours = model(x)
                theirs = session.run(None, {"x": x})[0]
                scale = np.abs(theirs).max()
                np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * scale)
                t_ours = median_ms(lambda: model(x), args.repeats)  # noqa: B023
                t_ort = median_ms(lambda: session.run(None, {"x": x}), args.repeats)  # noqa: B023
                t_ref = float("nan")
                if batch in reference_batches:
                    t_ref = median_ms(lambda: reference.run(None, {"x": x}), 1)  # noqa: B023
            print(
                f"| {name} | {batch} | {t_ours:.0f} | {t_ort:.0f} | {t_ref:.0f} | "
                f"{t_ours / t_ort:.2f} | {t_ref / t_ours:.1f} |"
            )


if __name__ == "__main__":
    main()
