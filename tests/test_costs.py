"""minilm.costs: parameter counts, FLOPs and memory from a config, checked against
published sizes, torch's FLOP counter (numbers stored below) and what minilm allocates."""
import dataclasses

import numpy as np
import pytest

from minilm.costs import (activation_memory, count_parameters, flops_per_token,
                          measure_activation_bytes, optimizer_memory, summary, training_memory)
from minilm.models import (BertConfig, BertForMaskedLM, BertForPreTraining,
                           BertForQuestionAnswering, BertForSequenceClassification,
                           BertForTokenClassification, BertModel, GPT, GPTConfig)
from minilm.optim import AdamW

# transformers 5.12.1, torch 2.13 (CPU): sum(p.numel()) of a model built from the default
# GPT2Config() / BertConfig(), and torch.utils.flop_counter.FlopCounterMode totals for
# eager-attention forward (and forward + loss.backward()) on one sequence.
GPT2_SMALL = 124_439_808
BERT_BASE = {"model": 109_482_240, "sequence_classification": 109_483_778,
             "masked_lm": 109_514_298, "pretraining": 110_106_428,
             "token_classification": 108_893_186, "question_answering": 108_893_186}
TORCH_FLOPS = [  # (config kind, L, C, H, V, P, T, forward FLOPs, forward + backward FLOPs)
    ("gpt", 12, 768, 12, 50257, 1024, 128, 32_228_179_968, 96_684_539_904),
    ("gpt", 2, 64, 4, 97, 32, 32, 7_213_056, 21_639_168),
    ("bert", 2, 64, 4, 97, 32, 32, 6_823_936, None),
]


def test_published_parameter_counts():
    assert count_parameters(GPTConfig()) == GPT2_SMALL
    for head, n in BERT_BASE.items():
        assert count_parameters(BertConfig(), head=head) == n, head


@pytest.mark.parametrize("cfg", [
    GPTConfig(vocab_size=65, n_positions=32, n_embd=48, n_layer=3, n_head=4),
    GPTConfig(vocab_size=11, n_positions=7, n_embd=20, n_layer=1, n_head=2, n_inner=33),
])
def test_gpt_count_matches_minilm_model(cfg):
    assert count_parameters(cfg) == GPT(cfg).num_parameters()


def test_bert_counts_match_minilm_models():
    cfg = BertConfig(vocab_size=41, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                     intermediate_size=37, max_position_embeddings=19, type_vocab_size=3, num_labels=5)
    for head, cls in [("model", BertModel), ("sequence_classification", BertForSequenceClassification),
                      ("token_classification", BertForTokenClassification),
                      ("question_answering", BertForQuestionAnswering), ("masked_lm", BertForMaskedLM),
                      ("pretraining", BertForPreTraining)]:
        c = dataclasses.replace(cfg, num_labels=2) if head == "question_answering" else cfg
        assert count_parameters(c, head=head) == cls(c).num_parameters(), head


def test_exact_flops_match_torch_flop_counter():
    for kind, L, C, H, V, P, T, fwd, train in TORCH_FLOPS:
        if kind == "gpt":
            cfg = GPTConfig(vocab_size=V, n_positions=P, n_embd=C, n_layer=L, n_head=H)
        else:
            cfg = BertConfig(vocab_size=V, hidden_size=C, num_hidden_layers=L, num_attention_heads=H,
                             intermediate_size=4 * C, max_position_embeddings=P)
        assert flops_per_token(cfg, T) * T == pytest.approx(fwd, rel=1e-12)
        if train is not None:
            assert flops_per_token(cfg, T, training=True) * T == pytest.approx(train, rel=1e-12)


def test_flop_conventions_on_gpt2_small():
    cfg = GPTConfig()
    N = count_parameters(cfg, non_embedding=True)
    assert N == 12 * 12 * 768 ** 2                               # 12 L C^2 when F = 4 C
    assert flops_per_token(cfg, convention="6N", training=True) == 6 * N
    kaplan = flops_per_token(cfg, 1024, convention="kaplan")
    assert kaplan == 2 * N + 2 * 12 * 1024 * 768
    exact = flops_per_token(cfg, 1024)
    assert exact - kaplan == pytest.approx(2 * 12 * 1024 * 768 + 2 * 768 * 50257)   # 2nd T x T product + LM head
    chin = flops_per_token(cfg, 1024, convention="chinchilla")
    assert chin > exact                                          # it also counts the input embedding and softmax
    with pytest.raises(ValueError, match="convention"):
        flops_per_token(cfg, convention="palm")


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_activation_formula_matches_what_gpt_keeps(dropout):
    cfg = GPTConfig(vocab_size=37, n_positions=16, n_embd=24, n_layer=2, n_head=3, resid_pdrop=dropout,
                    attn_pdrop=dropout, embd_pdrop=dropout)
    model = GPT(cfg).train()
    ids = np.random.default_rng(0).integers(0, 37, (3, 16))
    out = model(ids, labels=ids)
    measured = measure_activation_bytes(model, extra=[out.logits])
    assert measured == activation_memory(cfg, 3, 16, dropout=dropout > 0)["total"]


def test_optimizer_memory_matches_minilm_adamw():
    cfg = GPTConfig(vocab_size=37, n_positions=16, n_embd=24, n_layer=2, n_head=3)
    model = GPT(cfg)
    opt = AdamW(model.parameters(), lr=1e-3)
    ids = np.random.default_rng(0).integers(0, 37, (2, 8))
    model(ids, labels=ids)
    model.backward()
    opt.step()
    state = sum(int(v.nbytes) for s in opt.state.values() for v in s.values() if hasattr(v, "nbytes"))
    scratch = sum(int(v.nbytes) for v in opt._scratch.values())
    expected = optimizer_memory(cfg, "adamw", minilm=True)
    assert state == expected["optimizer_state"] and scratch == expected["scratch"]
    assert expected["weights"] == sum(int(p.data.nbytes) for p in model.parameters())
    mixed = optimizer_memory(cfg, "adamw", precision="mixed")
    assert mixed["total"] == 16 * count_parameters(cfg)          # ZeRO's 16 bytes per parameter


def test_summary_and_errors():
    text = summary(GPTConfig(), batch_size=8, seq_len=1024)
    assert "124,439,808" in text and "chinchilla" in text
    mem = training_memory(GPTConfig(), 8, 1024)
    assert mem["total"] == sum(v for k, v in mem.items() if k != "total")
    with pytest.raises(TypeError):
        count_parameters({"n_layer": 2})
    with pytest.raises(ValueError, match="head"):
        count_parameters(BertConfig(), head="classifier")
