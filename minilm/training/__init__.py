"""Training: the Trainer (hooks, Lightning-style modules, checkpoints), optimisers and
schedules, and data parallelism over MPI.

    trainer.py   Trainer, LightningModule, TrainerCallbacks   (old path: minilm.train)
    optim.py     SGD, Adam, AdamW, ZeroAdamW, clipping, schedules (minilm.optim)
    dist.py      communicators, DataParallel, gradient buckets  (minilm.dist)
"""
