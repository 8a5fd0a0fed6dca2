"""Training: the Trainer (hooks, Lightning-style modules, checkpoints), optimisers and
schedules, float16 mixed precision, and data parallelism.

    trainer.py     Trainer, LightningModule, no_grad                      (old path: minilm.train)
    optim.py       SGD, Adam, AdamW, ZeroAdamW, clipping, schedules        (minilm.optim)
    precision.py   LossScaler, MixedPrecision: Trainer(precision="fp16")
    dist.py        communicators (one process, MPI, NCCL on GPUs), DataParallel, gradient
                   buckets                                                 (minilm.dist)
"""
