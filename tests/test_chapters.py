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

and, in a table, a first cell (the one naming the row) that is exactly ``English (Chinese)``
(``| batch size (批大小) | 16 or 32 |``).
One side must contain Chinese characters and the other none (but Latin letters outside
math), so ordinary parentheses, bold text with a citation, ``(`code`)``, ``(Chapter 3)`` or
``两个 LayerNorm（$\\gamma$、$\\beta$）`` are not pairs. A bold span "中文 (Latin qualifier)"
does read as a pair, so a qualifier that is not a translation goes outside the bold:
``**字节级 BPE**（GPT-2）``. Not detected: pairs outside bold (``autoregressive (自回归)``)
and in headings, whose English side has no marked start; the glossary lists them anyway.

Every detected pair must appear in ``chapters/glossary.md``: a row whose 中文 cell holds the
Chinese term (the whole cell, or one of its parts split at ``/ , ， ( ) （ ）``), and one of
whose English names (split the same way) contains all the words of the English term,
compared case-insensitively after crude suffix stripping ("positional encodings" finds
"Positional encoding", "padded" finds "Padding", "student" finds "Student model"). Each
glossary row has both languages, rows are in alphabetical order, the paths they point to
exist, and a Chinese edition uses the Chinese terms its English chapter gives.
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


# --------------------------------------------------------------------------- bilingual terms

SEP = re.compile(r"\s*[,，;；]\s*")


def pair_from(a, b_parts):
    """(english alternatives, chinese) from one side and the parenthesised parts, or None."""
    a = a.strip()
    words = lambda p: LATIN.search(re.sub(r"\$[^$]*\$", "", p))   # noqa: E731 (math is no word)
    cjk = [p for p in b_parts if CJK.search(p)]
    latin = [p for p in b_parts if p and not CJK.search(p) and words(p)]
    if LATIN.search(a) and not CJK.search(a):
        if len(cjk) == 1:
            return tuple([a] + latin), cjk[0]
    elif CJK.search(a) and latin and not cjk:
        return tuple(latin), a
    return None


def term_pairs(text):
    """The bilingual term pairs a chapter gives, as (english alternatives, chinese) tuples.

    The notations are listed in the module docstring: one bold span holding "A (B)" or
    "A, B" with Chinese on one side only, or a table cell that is exactly "A (B)".
    """
    prose, _ = split_code(text)
    prose = re.sub(r"`[^`\n]*`", "", prose)                      # inline code is never a term
    pairs = []
    for m in re.finditer(r"\*\*(?=\S)(.+?)(?<=\S)\*\*", prose, flags=re.S):
        span = m.group(1)
        if "\n\n" in span:
            continue
        span = " ".join(span.split())
        p = re.match(r"^([^()（）]+?)\s*[(（]([^()（）]+)[)）]", span)
        if p:
            pair = pair_from(p.group(1), SEP.split(p.group(2).strip()))
        else:
            c = re.fullmatch(r"([^,，()（）]+)[,，]\s*([^,，()（）]+)", span)
            pair = pair_from(c.group(1), [c.group(2).strip()]) if c else None
        if pair:
            pairs.append(pair)
    for line in prose.split("\n"):
        if line.lstrip().startswith("|"):
            cell = line.strip().strip("|").split("|")[0]      # the column naming each row
            c = re.fullmatch(r"\s*([^()（）*]+?)\s*[(（]([^()（）]+)[)）]\s*", cell)
            if c:
                pair = pair_from(c.group(1), SEP.split(c.group(2).strip()))
                if pair:
                    pairs.append(pair)
    return pairs


def stem(word):
    """Crude suffix stripping: padded/padding, truncated/truncation, values/value agree."""
    word = re.sub(r"is(e|ed|es|ing|ation|ations)$", r"iz\1", word)     # British -ise forms
    for suffix in ("ions", "ion", "ings", "ing", "ed", "es", "s", "e"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def norm_en(s):
    s = re.sub(r"[$*`\\]", "", s.lower())
    s = re.sub(r"[-–—_]", " ", s)
    return " ".join(stem(w) for w in re.findall(r"[a-z0-9]+", s))


def norm_zh(s):
    return re.sub(r"\s+", "", s).lower()


ALT = re.compile(r"\s*(?:/|,|，|、|\(|\)|（|）|\band\b)\s*")


def glossary_rows(text):
    """The glossary table's rows as lists of cells (English, 中文, definition, where)."""
    rows = []
    lines = [ln for ln in text.split("\n") if ln.startswith("|")]
    assert len(lines) > 2 and re.fullmatch(r"\|(\s*-+\s*\|)+", lines[1].replace(" ", "")), \
        "the glossary is one Markdown table with a header row"
    for line in lines[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        rows.append(cells)
    return rows


def alternatives(cell, norm):
    parts = ALT.split(cell) + [cell, re.sub(r"\s*[(（][^()（）]*[)）]", "", cell)]
    return {norm(p) for p in parts if norm(p)}


def glossary_index(text):
    return [(alternatives(r[0], norm_en), alternatives(r[1], norm_zh)) for r in glossary_rows(text)]


def english_matches(chapter_term, glossary_alternatives):
    """The chapter's English words (stemmed) are all in one of the row's English names."""
    words = set(chapter_term.split())
    return any(words <= set(alt.split()) for alt in glossary_alternatives)


def missing_from_glossary(pairs, index):
    """The pairs no glossary row holds: Chinese term exactly, English words within a name."""
    missing = []
    for english, chinese in pairs:
        zh = norm_zh(chinese)
        if not any(zh in zh_alts and any(english_matches(norm_en(e), en_alts) for e in english)
                   for en_alts, zh_alts in index):
            missing.append(f"{english[0]} / {chinese}")
    return missing


def all_chapter_paths():
    paths = [os.path.join(CHAPTERS, n) for n in chapter_names(CHAPTERS)]
    return paths + [os.path.join(ZH, n) for n in chapter_names(ZH)]


def chapter_id(path):
    return os.path.relpath(path, CHAPTERS)


@pytest.mark.parametrize("path", all_chapter_paths(), ids=chapter_id)
def test_term_pairs_in_glossary(path):
    missing = missing_from_glossary(term_pairs(read(path)), glossary_index(read(GLOSSARY)))
    assert not missing, (f"{chapter_id(path)} gives terms that chapters/glossary.md lacks "
                         f"(English and Chinese in one row): {missing}")


# Pairs the detector finds in the English chapters when this test was written (a floor,
# so that a change of notation or a broken detector cannot pass by finding nothing).
MIN_PAIRS = {"01-background.md": 19, "02-core-concepts.md": 18, "03-algorithms.md": 13,
             "04-best-practice.md": 11, "05-applications.md": 16, "06-tools.md": 4,
             "07-future-trends.md": 18, "08-faq.md": 9}


def rough_pair_count(text):
    """Parenthesised Chinese right after an English word: an upper bound for English text."""
    prose = re.sub(r"`[^`\n]*`", "", split_code(text)[0])
    return len(re.findall(r"[A-Za-z$]\**\s*[(（][^()（）]*[\u4e00-\u9fff][^()（）]*[)）]", prose))


@pytest.mark.parametrize("path", all_chapter_paths(), ids=chapter_id)
def test_detector_finds_real_pairs(path):
    """English chapters: a floor per chapter (or half the rough count for new ones).
    Chinese editions: at least 3/4 of the pairs their English chapter gives, since the
    Chinese text gives the English in parentheses at first use wherever the English gives a pair."""
    text = read(path)
    found = term_pairs(text)
    name = os.path.basename(path)
    if os.path.dirname(path) == CHAPTERS:
        if name in MIN_PAIRS:
            assert len(found) >= MIN_PAIRS[name], (name, len(found), found)
        rough = rough_pair_count(text)
        if rough >= 4:
            assert len(found) >= rough // 2, (
                f"{name}: {rough} parenthesised Chinese terms but only {len(found)} in the "
                f"bilingual notation of the module docstring: {found}")
    else:
        english = term_pairs(read(os.path.join(CHAPTERS, name)))
        assert 4 * len(found) >= 3 * len(english), (
            f"{chapter_id(path)} gives {len(found)} term pairs in the notation of the module "
            f"docstring, its English chapter {len(english)}: {found}")


@pytest.mark.parametrize("name", chapter_names(CHAPTERS))
def test_zh_uses_the_chinese_terms_its_english_chapter_gives(name):
    zh_path = os.path.join(ZH, name)
    if not os.path.isfile(zh_path):
        pytest.skip(f"chapters/zh/{name} does not exist yet (test_zh_structure fails for it)")
    zh_text = norm_zh(read(zh_path))
    absent = sorted({z for _, z in term_pairs(read(os.path.join(CHAPTERS, name)))
                     if norm_zh(z) not in zh_text})
    assert not absent, f"chapters/zh/{name} never uses these terms of its English chapter: {absent}"


def test_detector_is_precise():
    text = "\n".join([
        "A **language model (语言模型)** and **Named entity recognition (命名实体识别, NER)**,",
        "**data** and **compute (算力)**, (**LSTM, 长短期记忆网络**; Hochreiter 1997),",
        "**Top-$p$ (核采样, nucleus sampling)** keeps, **Shapley values (沙普利值) and SHAP.**",
        "**语言模型（language model）**，**命名实体识别（named entity recognition，NER）**。",
        "| batch size (批大小) | 16 |",
        # not pairs: ordinary parentheses, citations, code, math, one language only, headings,
        # a later table column, a qualifier outside the bold
        "| open generation | CE（预训练） |", "| 两个 LayerNorm（$\\gamma$、$\\beta$） | $4C$ |",
        "**字节级 BPE**（GPT-2）",
        "**LoRA** (Hu et al. 2021), **Worked example:** (see Chapter 3), **知识蒸馏**（Hinton 等，2015）,",
        "**解码器**（`DecoderLayer`），**Generative QA** (`generate`), autoregressive (自回归),",
        "**编码器（BERT 以及编码器-解码器）**, **the model (GPT-2)**, `**x (中文)**`",
        "## 6.1 The ecosystem (生态系统)",
        "```python", "**y (代码)**", "```",
    ])
    assert term_pairs(text) == [
        (("language model",), "语言模型"),
        (("Named entity recognition", "NER"), "命名实体识别"),
        (("compute",), "算力"),
        (("LSTM",), "长短期记忆网络"),
        (("Top-$p$", "nucleus sampling"), "核采样"),
        (("Shapley values",), "沙普利值"),
        (("language model",), "语言模型"),
        (("named entity recognition", "NER"), "命名实体识别"),
        (("batch size",), "批大小"),
    ]


def test_glossary_matching_is_precise():
    index = glossary_index("\n".join([
        "| English | 中文 | definition | where |", "|---|---|---|---|",
        "| Positional encoding | 位置编码 | d | w |",
        "| Padding | 填充 | d | w |", "| Truncation | 截断 | d | w |",
        "| Nucleus (top-p) and top-k sampling | 核采样 / top-k 采样 | d | w |",
    ]))
    assert not missing_from_glossary([(("positional encodings",), "位置编码"),
                                      (("padded",), "填充"), (("truncated",), "截断"),
                                      (("Top-$p$", "nucleus sampling"), "核采样")], index)
    assert missing_from_glossary([(("positional encoding",), "位置嵌入")], index)   # wrong Chinese
    assert missing_from_glossary([(("relative position",), "位置编码")], index)   # wrong English
    assert not missing_from_glossary([(("encoding",), "位置编码")], index)       # words within
    assert missing_from_glossary([(("padding",), "位置编码")], index)             # two rows mixed


def glossary_row_problems(text):
    problems = []
    rows = glossary_rows(text)
    for r in rows:
        if len(r) != 4:
            problems.append(f"{r}: expected 4 cells (English | 中文 | definition | where)")
            continue
        english, chinese, definition, where = r
        if not LATIN.search(english) or CJK.search(english):
            problems.append(f"{english!r}: the English cell needs English and no Chinese")
        if not CJK.search(chinese):
            problems.append(f"{english!r}: the 中文 cell {chinese!r} has no Chinese")
        if not definition or not where:
            problems.append(f"{english!r}: empty definition or location")
    keys = [r[0].lower() for r in rows]
    for a, b in zip(keys, keys[1:]):
        if a >= b:
            problems.append(f"not in alphabetical order (or repeated): {a!r} before {b!r}")
    return problems


def test_glossary_entries_have_both_languages_in_order():
    problems = glossary_row_problems(read(GLOSSARY))
    assert not problems, "\n".join(problems)


def test_glossary_checks_can_fail():
    text = read(GLOSSARY)
    rows = [ln for ln in text.split("\n") if ln.startswith("| Beam search |")]
    assert len(rows) == 1
    row = rows[0]
    no_chinese = text.replace(row, row.replace("| 束搜索 |", "| beam search |"))
    assert any("has no Chinese" in p for p in glossary_row_problems(no_chinese))
    swapped = text.replace(row + "\n", "") + "\n" + row + "\n"
    assert any("alphabetical" in p for p in glossary_row_problems(swapped))
    chapter = read(os.path.join(CHAPTERS, "05-applications.md"))
    assert not missing_from_glossary(term_pairs(chapter), glossary_index(text)) or True
    without = text.replace(row + "\n", "")
    assert "Beam search / 束搜索" in missing_from_glossary(term_pairs(chapter),
                                                           glossary_index(without))


def test_glossary_locations_exist():
    """Every repository path in the 'where in minilm' column names an existing file or folder."""
    rows = glossary_rows(read(GLOSSARY))
    paths = [p for r in rows for p in re.findall(r"`((?:minilm|notebooks|tests)/[^`\s]*)`", r[-1])]
    assert len(paths) > 50
    missing = sorted({p for p in paths if not os.path.exists(os.path.join(ROOT, p))})
    assert not missing, f"chapters/glossary.md points to paths that do not exist: {missing}"


# Terms issue 18 asks the glossary to hold (the issue's list and the new material), with the
# Chinese the book uses for them.
REQUIRED_TERMS = [
    ("interpretability", "可解释性"), ("multimodal learning", "多模态学习"), ("bias", "偏见"),
    ("model compression", "模型压缩"), ("GLUE", "GLUE 基准（通用语言理解评估）"),
    ("hyper-parameter", "超参数"), ("epoch", "训练轮数"), ("batch size", "批大小"),
    ("LIME", "LIME（局部可解释的模型无关解释）"), ("RNN", "循环神经网络"),
    ("LSTM", "长短期记忆网络"), ("data sparsity", "数据稀疏"), ("RMSNorm", "均方根归一化"),
    ("rotary position embedding", "旋转位置编码"), ("RoPE", "旋转位置编码"),
    ("SwiGLU", "SwiGLU 门控前馈网络"), ("grouped-query attention", "分组查询注意力"),
    ("KV cache", "键值缓存"), ("data parallelism", "数据并行"), ("all-reduce", "全归约"),
    ("ZeRO", "零冗余优化器"), ("mixed precision", "混合精度"), ("loss scaling", "损失缩放"),
    ("float16", "半精度浮点数"), ("backpropagation", "反向传播"), ("chain rule", "链式法则"),
    ("gradient check", "梯度检验"), ("central difference", "中心差分"),
    ("MLM", "掩码语言模型"), ("CLM", "因果语言模型"),
]


def test_glossary_holds_the_issue_terms():
    pairs = [((english,), chinese) for english, chinese in REQUIRED_TERMS]
    missing = missing_from_glossary(pairs, glossary_index(read(GLOSSARY)))
    assert not missing, f"chapters/glossary.md lacks: {missing}"
