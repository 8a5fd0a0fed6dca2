"""Trustworthy models (the document's section 7), each a module of its own:

    interpret.py   attention maps, rollout, saliency, integrated gradients, LIME, SHAP (minilm.interpret)
    privacy.py     DP-SGD with per-example gradients, the RDP accountant            (minilm.privacy)
    federated.py   FedAvg, IID and Dirichlet splits, DP-FedAvg                      (minilm.federated)
    bias.py        WEAT / SEAT, masked-LM template probes                           (minilm.bias)
    common.py      shared data and models of the trust commands                     (minilm.trust_common)
    cli.py         python -m minilm trust ...                                       (minilm.trust_cli)
"""
