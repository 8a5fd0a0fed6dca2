"""Evaluation: what a model scores and what it costs.

    metrics.py   accuracy, P/R/F1, confusion matrix, entity F1, SQuAD EM/F1, BLEU, ROUGE (minilm.metrics)
    costs.py     parameters, FLOPs and memory of a config                             (minilm.costs)
"""
