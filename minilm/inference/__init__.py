"""Inference: decoding from a trained model.

    generate.py      greedy, temperature, top-k, top-p, with a KV cache  (old path: minilm.generate)
    beam_search.py   beam search with length penalty                      (minilm.beam_search)
"""
