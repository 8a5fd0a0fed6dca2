"""Applications, built on the public model interface only (no cache tuples, no private imports).

    finetune.py        BERT pre-training and the fine-tuning tasks   (old path: minilm.finetune)
    seq2seq_tasks.py   translation and summarisation                 (minilm.seq2seq_tasks)
    compress/          distillation, quantisation, pruning, LoRA     (minilm.compress)
    trust/             interpretability, privacy, federated, bias    (minilm.interpret, ...)
    multimodal.py      ViT and CLIP-style contrastive training       (minilm.multimodal)
"""
