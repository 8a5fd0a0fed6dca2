"""The English chapters, their Chinese editions and the glossary stay in step.

Structure (``test_zh_structure``, one case per ``chapters/NN-*.md``): the Chinese edition
``chapters/zh/NN-*.md`` exists under the same file name and has

- the same sequence of heading levels (``#`` .. ``######`` outside code blocks);
- the same display equations, the ``$$...$$`` blocks, compared after collapsing whitespace;
- the same figures: image targets (``![alt](target)`` and ``<img src="target">``) are written
  relative to each file, so they are compared as resolved paths, in order, and each must
  resolve to an existing file;
- the same number of fenced code blocks.

A missing Chinese edition fails (it does not skip): every chapter must have one.

Bilingual terms (``test_term_pairs_in_glossary`` and friends). The chapters give a term in
both languages inside **one bold span**, in one of these notations (``()`` may be the
full-width ``（）``, ``,`` the full-width ``，``, the two sides in either order):

    **language model (语言模型)**                  English (Chinese)
    **Named entity recognition (命名实体识别, NER)**  English (Chinese, alias or abbreviation)
    **Top-$p$ (核采样, nucleus sampling)**         "
    **Shapley values (沙普利值) and Kernel SHAP.**  the pair starts the span; the rest is ignored
    (**LSTM, 长短期记忆网络**)                       English, Chinese
    **语言模型（language model）**                  Chinese (English): the Chinese edition's form
    **命名实体识别（named entity recognition，NER）**

and, in a table, a cell that is exactly ``English (Chinese)`` (``| batch size (批大小) |``).
One side must contain Chinese characters and the other none (but Latin letters), so ordinary
parentheses, bold text with a citation, ``(`code`)`` or ``(Chapter 3)`` are not pairs.
Not detected: pairs outside bold (``autoregressive (自回归)``) and in headings, whose English
side has no marked start; the glossary lists those terms anyway.

Every detected pair must appear in ``chapters/glossary.md``: a row whose 中文 cell contains
the Chinese term (the cell, or one of its parts split at ``/ , ， ( ) （ ）``), and whose
English cell names the English term (same splitting, compared case-insensitively after
crude suffix stripping, so "positional encodings" finds "Positional encoding" and "padded"
finds "Padding"). Each glossary row has both languages, rows are in alphabetical order,
and a Chinese edition uses the Chinese terms its English chapter gives.
"""
import os
import re

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CHAPTERS = os.path.join(ROOT, "chapters")
ZH = os.path.join(CHAPTERS, "zh")
GLOSSARY = os.path.join(CHAPTERS, "glossary.md")
NAME = re.compile(r"^\d\d-.*\.md$")

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
LATIN = re.compile(r"[A-Za-z]")


def chapter_names(folder):
    return sorted(n for n in os.listdir(folder) if NAME.match(n)) if os.path.isdir(folder) else []


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# --------------------------------------------------------------------------- structure

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


def split_code(text):
    """(prose with fenced code blocks blanked out, number of fenced code blocks)."""
    prose, blocks, fence = [], 0, None
    for line in text.split("\n"):
        m = FENCE.match(line)
        if fence is None:
            if m:
                fence, blocks = m.group(1), blocks + 1
                prose.append("")
            else:
                prose.append(line)
        else:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) \
                    and line.strip() == m.group(1):
                fence = None
            prose.append("")
    assert fence is None, "a fenced code block is never closed"
    return "\n".join(prose), blocks


def structure(text, folder):
    """Heading levels, display equations, figure paths resolved from folder, code-block count."""
    prose, blocks = split_code(text)
    headings = [len(m.group(1)) for m in re.finditer(r"^(#{1,6})\s", prose, flags=re.M)]
    equations = [" ".join(e.split()) for e in re.findall(r"\$\$(.+?)\$\$", prose, flags=re.S)]
    targets = re.findall(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", prose)
    targets += re.findall(r"<img\b[^>]*\bsrc=[\"']([^\"']+)[\"']", prose)
    figures = [os.path.normpath(os.path.join(folder, t)) for t in targets]
    return {"headings": headings, "equations": equations, "figures": figures, "code": blocks}


def compare_structure(name, en_text, zh_text, en_folder=CHAPTERS, zh_folder=ZH):
    """Assert the Chinese text has the English chapter's structure."""
    en, zh = structure(en_text, en_folder), structure(zh_text, zh_folder)
    assert en["headings"] == zh["headings"], (
        f"{name}: heading levels differ ({len(en['headings'])} English, {len(zh['headings'])} "
        f"Chinese)\n  en {en['headings']}\n  zh {zh['headings']}")
    for i, (a, b) in enumerate(zip(en["equations"], zh["equations"])):
        assert a == b, f"{name}: display equation {i + 1} differs\n  en {a}\n  zh {b}"
    assert len(en["equations"]) == len(zh["equations"]), (
        f"{name}: {len(en['equations'])} display equations in English, "
        f"{len(zh['equations'])} in Chinese")
    assert en["figures"] == zh["figures"], (
        f"{name}: figures differ (resolved paths)\n  en {en['figures']}\n  zh {zh['figures']}")
    for fig in en["figures"]:
        assert os.path.isfile(fig), f"{name}: figure {os.path.relpath(fig, ROOT)} does not exist"
    assert en["code"] == zh["code"], (
        f"{name}: {en['code']} fenced code blocks in English, {zh['code']} in Chinese")


@pytest.mark.parametrize("name", chapter_names(CHAPTERS))
def test_zh_structure(name):
    zh_path = os.path.join(ZH, name)
    assert os.path.isfile(zh_path), (
        f"chapters/zh/{name} is missing: every chapter needs its Chinese edition")
    compare_structure(name, read(os.path.join(CHAPTERS, name)), read(zh_path))


def test_every_zh_chapter_has_an_english_original():
    orphans = sorted(set(chapter_names(ZH)) - set(chapter_names(CHAPTERS)))
    assert not orphans, f"chapters/zh has chapters with no English original: {orphans}"


def test_there_are_chapters():
    assert len(chapter_names(CHAPTERS)) >= 8


BREAKAGES = {
    "heading level": lambda t: t.replace("\n## ", "\n### ", 1),
    "heading dropped": lambda t: t.replace("\n## ", "\n", 1),
    "equation changed": lambda t: t.replace("\\alpha\\,T^2", "\\alpha\\,T^3", 1),
    "equation dropped": lambda t: re.sub(r"\$\$.+?\$\$", "", t, count=1, flags=re.S),
    "figure renamed": lambda t: t.replace("07-clip.png", "07-clip-zh.png", 1),
    "figure path not adjusted": lambda t: t.replace("](../../", "](../", 1),
    "code block added": lambda t: t + "\n```python\nx = 1\n```\n",
}


@pytest.mark.parametrize("what", sorted(BREAKAGES))
def test_structure_check_can_fail(what):
    """A copy of Chapter 7 as chapters/zh/ would hold it passes; each broken copy fails."""
    name = "07-future-trends.md"
    en = read(os.path.join(CHAPTERS, name))
    zh = en.replace("](../", "](../../")          # figure paths as seen from chapters/zh/
    compare_structure(name, en, zh)
    broken = BREAKAGES[what](zh)
    assert broken != zh, what
    with pytest.raises(AssertionError):
        compare_structure(name, en, broken)


def test_missing_figure_fails():
    name = "07-future-trends.md"
    en = read(os.path.join(CHAPTERS, name)).replace("07-clip.png", "no-such-figure.png")
    with pytest.raises(AssertionError, match="does not exist"):
        compare_structure(name, en, en.replace("](../", "](../../"))
