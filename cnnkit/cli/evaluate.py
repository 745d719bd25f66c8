"""`cnnkit evaluate`: test accuracy of a checkpoint."""

from __future__ import annotations

from cnnkit.cli.checkpoint import load_test_split, normalize, restore_model
from cnnkit.cli.options import FILE, FOLDER, POSITIVE, text
from cnnkit.data import DataLoader
from cnnkit.train import evaluate


def add_parser(commands) -> None:
    """Add `cnnkit evaluate` to the sub-parsers ``commands``."""
    evaluate_cmd = commands.add_parser(
        "evaluate",
        help="test accuracy of a checkpoint",
        description="Evaluate a checkpoint on the test split of its data set (or --dataset).",
    )
    evaluate_cmd.add_argument(
        "--checkpoint", type=FILE, required=True, help="checkpoint.npz of a run"
    )
    evaluate_cmd.add_argument(
        "--dataset",
        type=text("a data set name"),
        help="data set (default: the one it was trained on)",
    )
    evaluate_cmd.add_argument(
        "--data-dir", type=FOLDER, help="folder holding the data sets (default $CNNKIT_DATA)"
    )
    evaluate_cmd.add_argument(
        "--batch-size", type=POSITIVE, default=256, help="images per batch (default 256)"
    )


def run(args) -> int:
    """Run `cnnkit evaluate`: accuracy of a checkpoint on a test split."""
    model, _, data = restore_model(args.checkpoint)
    dataset = args.dataset or data["dataset"]
    test = load_test_split(dataset, args.data_dir, data, args.checkpoint)
    loader = DataLoader(
        test.images,
        test.labels,
        args.batch_size,
        seed=0,
        transform=lambda x, rng: normalize(x, data),
    )
    result = evaluate(model, loader, num_classes=len(data["class_names"]))
    print(
        f"{dataset} test: accuracy {result['accuracy']:.4f}, top-5 {result['top5_accuracy']:.4f}, "
        f"loss {result['loss']:.4f} on {len(test)} images"
    )
    return 0
