"""Data-parallel training with the Python API: run with ``mpiexec -n 2 python THIS_FILE``.

Every rank builds the same model and loaders; the training loader serves each rank its shard of
every global batch of 64, the test loader every size-th image; Trainer sums the gradients over
the ranks after each backward pass. Rank 0 prints the result. Started without mpiexec, the same
script trains in one process.
"""

import numpy as np

import cnnkit as ck
from cnnkit.data import DataLoader, Normalize, load_digits
from cnnkit.distributed import Communicator, sync_batch_norm
from cnnkit.train import Trainer, evaluate

communicator = Communicator()
rank, size = communicator.rank, communicator.size

splits = load_digits()
normalize = Normalize(0.5, 0.25)
train_loader = DataLoader(
    splits.train.images,
    splits.train.labels,
    batch_size=64,
    shuffle=True,
    seed=0,
    transform=normalize,
    shard=(rank, size),
    drop_last=True,
)
test_indices = np.arange(len(splits.test.labels))[rank::size]
test_loader = DataLoader(
    splits.test.images, splits.test.labels, 256, transform=normalize, indices=test_indices
)

model = ck.models.get("small_cnn", num_classes=10, in_channels=1, seed=0)
sync_batch_norm(model, communicator)  # batch statistics over the global batch of 64
optimizer = ck.optim.Adam(model.parameters(), lr=2e-3)
trainer = Trainer(model, optimizer, communicator=communicator, progress=False)
trainer.fit(train_loader, epochs=5)

test = evaluate(model, test_loader, communicator=communicator)
if communicator.is_root:
    print(f"{size} rank(s): test accuracy {test['accuracy']:.4f} after 5 epochs")
