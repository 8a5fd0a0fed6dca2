"""Sequence-to-sequence data the project makes itself (nothing is downloaded).

- `copy_batch`, `reverse_batch`: the annotated Transformer's sanity tasks (random symbols,
  copied or reversed).
- `make_translation_pair`: English -> French on a small fragment of French grammar, with the
  things that make translation more than word lookup: gender and number agreement of
  articles and adjectives ("the black cats" -> "les chats noirs"), adjectives that move
  behind the noun (colours) or stay in front (size, age), elision and contraction before
  vowels ("the bird" -> "l' oiseau", "near the trees" -> "près des arbres", "my school" ->
  "mon école"), object pronouns that move in front of the verb ("sees her" -> "la voit"),
  negation around the verb ("does not like" -> "n' aime pas"), words that disappear ("waits
  for the bus" -> "attend le bus") and irregular plurals ("horses" -> "chevaux"). Every
  English sentence has exactly one translation, so exact match is a fair test.
- `make_headline_pair`: short news passages (a football match, a company's results, an
  election) with distracting sentences in random order -> a one-line headline that needs the
  right facts picked out and compared ("... the lions scored 1 , the bears scored 3 ..." ->
  "bears beat lions 3 - 1 in oslo").

`Vocab` is a word-level vocabulary with <pad>, <s>, </s>, <unk>; `Seq2SeqData` holds
train/valid/test splits and draws padded batches for the Trainer.
"""
import numpy as np

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)                    # ids 0, 1, 2, 3
IGNORE_INDEX = -100


class Vocab:
    """Word-level vocabulary: ids 0-3 are <pad> <s> </s> <unk>, then words in the given order."""

    def __init__(self, words):
        self.itos = list(SPECIALS) + [w for w in dict.fromkeys(words) if w not in SPECIALS]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = 0, 1, 2, 3

    @classmethod
    def build(cls, sentences):
        """Vocabulary of every whitespace token in `sentences`, sorted (reproducible ids)."""
        return cls(sorted({w for s in sentences for w in s.split()}))

    def __len__(self):
        return len(self.itos)

    def encode(self, sentence, add_eos=False):
        """"the cat" -> [id("the"), id("cat")] (+ [eos])"""
        ids = [self.stoi.get(w, self.unk_id) for w in sentence.split()]
        return ids + [self.eos_id] if add_eos else ids

    def decode(self, ids):
        """Ids -> text, stopping at </s> and skipping <pad> and <s>."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.bos_id):
                continue
            words.append(self.itos[i] if 0 <= i < len(self.itos) else UNK)
        return " ".join(words)

    def to_dict(self):
        return {"itos": self.itos}

    @classmethod
    def from_dict(cls, d):
        return cls([w for w in d["itos"] if w not in SPECIALS])


def pad_batch(sequences, pad_value):
    """List of id lists -> (B, T) int64 array padded at the end, and the (B, T) 0/1 mask."""
    T = max(len(s) for s in sequences)
    out = np.full((len(sequences), T), pad_value, dtype=np.int64)
    mask = np.zeros((len(sequences), T), dtype=np.int64)
    for i, s in enumerate(sequences):
        out[i, :len(s)] = s
        mask[i, :len(s)] = 1
    return out, mask


def seq2seq_batch(src_ids, tgt_ids, pad_id=0):
    """Lists of source and target id lists (targets ending in EOS) -> a model batch:
    input_ids (B, S), attention_mask (B, S), labels (B, T) with -100 at padding."""
    input_ids, attention_mask = pad_batch(src_ids, pad_id)
    labels, _ = pad_batch(tgt_ids, IGNORE_INDEX)                     # -100 where padded
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


# ---------------------------------------------------------------------------------------
# The annotated Transformer's copy and reverse tasks
# ---------------------------------------------------------------------------------------

def copy_batch(rng, batch_size, length, vocab_size, reverse=False, first_symbol=3):
    """Random sequences of symbols in [first_symbol, vocab_size) (ids below are pad/bos/eos);
    the target is the source (copy) or the source reversed, followed by EOS (id 2).
    Lengths vary from 1 to `length`, so the batch has padding at the end."""
    lengths = rng.integers(1, length + 1, batch_size)
    src = [rng.integers(first_symbol, vocab_size, n).tolist() for n in lengths]
    tgt = [(s[::-1] if reverse else list(s)) + [2] for s in src]
    return seq2seq_batch(src, tgt)


def reverse_batch(rng, batch_size, length, vocab_size):
    return copy_batch(rng, batch_size, length, vocab_size, reverse=True)


# ---------------------------------------------------------------------------------------
# English -> French on a fragment of French grammar
# ---------------------------------------------------------------------------------------

# english singular, english plural, french singular, french plural, gender
NOUNS = [
    ("cat", "cats", "chat", "chats", "m"), ("dog", "dogs", "chien", "chiens", "m"),
    ("bird", "birds", "oiseau", "oiseaux", "m"), ("horse", "horses", "cheval", "chevaux", "m"),
    ("tree", "trees", "arbre", "arbres", "m"), ("book", "books", "livre", "livres", "m"),
    ("boy", "boys", "garçon", "garçons", "m"), ("man", "men", "homme", "hommes", "m"),
    ("bus", "buses", "bus", "bus", "m"), ("girl", "girls", "fille", "filles", "f"),
    ("woman", "women", "femme", "femmes", "f"), ("house", "houses", "maison", "maisons", "f"),
    ("apple", "apples", "pomme", "pommes", "f"), ("car", "cars", "voiture", "voitures", "f"),
    ("flower", "flowers", "fleur", "fleurs", "f"), ("school", "schools", "école", "écoles", "f"),
    ("island", "islands", "île", "îles", "f"), ("friend", "friends", "amie", "amies", "f"),
]
ANIMATE = {"cat", "dog", "bird", "horse", "boy", "man", "girl", "woman", "friend"}
# adjectives that stay in front of the noun: m sg, m sg before a vowel, f sg, m pl, f pl
PRE_ADJ = {"small": ("petit", "petit", "petite", "petits", "petites"),
           "big": ("grand", "grand", "grande", "grands", "grandes"),
           "young": ("jeune", "jeune", "jeune", "jeunes", "jeunes"),
           "old": ("vieux", "vieil", "vieille", "vieux", "vieilles")}
# colours follow the noun: m sg, f sg, m pl, f pl
COLOUR = {"black": ("noir", "noire", "noirs", "noires"), "green": ("vert", "verte", "verts", "vertes"),
          "white": ("blanc", "blanche", "blancs", "blanches"), "red": ("rouge", "rouge", "rouges", "rouges"),
          "blue": ("bleu", "bleue", "bleus", "bleues")}
# english base, english 3rd singular, french 3rd singular, french 3rd plural
VERBS = [("see", "sees", "voit", "voient"), ("eat", "eats", "mange", "mangent"),
         ("like", "likes", "aime", "aiment"), ("follow", "follows", "suit", "suivent"),
         ("find", "finds", "trouve", "trouvent"), ("look at", "looks at", "regarde", "regardent"),
         ("wait for", "waits for", "attend", "attendent")]
NUMBERS = {"two": "deux", "three": "trois", "four": "quatre"}
PREPOSITIONS = {"in": "dans", "with": "avec", "near": "près de"}
SUBJECT_PRONOUNS = {("he", "sg"): "il", ("she", "sg"): "elle", ("they", "pl"): "ils"}
OBJECT_PRONOUNS = {"him": "le", "her": "la", "them": "les"}


def _vowel(word):
    return word[0] in "aeiouéèêîôâh"          # h muet in this fragment (homme)


def _noun_phrase(rng, animate=None):
    """A random noun phrase -> (english words, french words, number "sg"/"pl")."""
    pool = [n for n in NOUNS if animate is None or (n[0] in ANIMATE) == animate]
    en_sg, en_pl, fr_sg, fr_pl, gender = pool[rng.integers(len(pool))]
    det = ["the", "the", "a", "my", "number"][rng.integers(5)]
    plural = det == "number" or (det in ("the", "my") and rng.random() < 0.4)
    number = "pl" if plural else "sg"
    pre = list(PRE_ADJ)[rng.integers(len(PRE_ADJ))] if rng.random() < 0.3 else None
    colour = list(COLOUR)[rng.integers(len(COLOUR))] if rng.random() < 0.3 else None

    noun_fr = fr_pl if plural else fr_sg
    fr_after = [noun_fr]
    if colour:                                             # colours agree and follow the noun
        fr_after.append(COLOUR[colour][(2 if plural else 0) + (gender == "f")])
    fr_adj = []
    if pre:                                                # size/age agree and precede it
        forms = PRE_ADJ[pre]
        if plural:
            fr_adj = [forms[4] if gender == "f" else forms[3]]
        elif gender == "f":
            fr_adj = [forms[2]]
        else:
            fr_adj = [forms[1] if _vowel(noun_fr) else forms[0]]
    following = (fr_adj + fr_after)[0]                     # the word right after the article
    if det == "number":
        en_det = list(NUMBERS)[rng.integers(len(NUMBERS))]
        fr_det = [NUMBERS[en_det]]
    elif det == "the":
        en_det = "the"
        fr_det = ["les"] if plural else ["l'"] if _vowel(following) else ["la" if gender == "f" else "le"]
    elif det == "a":
        en_det = "a"
        fr_det = ["une" if gender == "f" else "un"]
    else:                                                  # my: mon before any vowel, even feminine
        en_det = "my"
        fr_det = ["mes"] if plural else ["mon"] if (gender == "m" or _vowel(following)) else ["ma"]
    en = [en_det] + ([pre] if pre else []) + ([colour] if colour else []) + [en_pl if plural else en_sg]
    return en, fr_det + fr_adj + fr_after, number


def _prepositional_phrase(rng):
    en_prep = list(PREPOSITIONS)[rng.integers(len(PREPOSITIONS))]
    en, fr, _ = _noun_phrase(rng)
    if en_prep == "near":                                  # de + le = du, de + les = des
        if fr[0] == "le":
            return ["near"] + en, ["près", "du"] + fr[1:]
        if fr[0] == "les":
            return ["near"] + en, ["près", "des"] + fr[1:]
        return ["near"] + en, ["près", "de"] + fr
    return [en_prep] + en, [PREPOSITIONS[en_prep]] + fr


def make_translation_pair(rng):
    """One (english, french) sentence pair, whitespace-tokenised strings.

    subject  verb  object  [prepositional phrase], with optional negation, pronoun subjects
    and pronoun objects. Example: "the small black cats do not see her near the trees" ->
    "les petits chats noirs ne la voient pas près des arbres".
    """
    # subject
    if rng.random() < 0.2:
        (en_subj, number), fr_subj = list(SUBJECT_PRONOUNS.items())[rng.integers(3)]
        en_subj, fr_subj = [en_subj], [fr_subj]
    else:
        en_subj, fr_subj, number = _noun_phrase(rng, animate=True)
    # verb, with negation
    en_base, en_3sg, fr_sg, fr_pl = VERBS[rng.integers(len(VERBS))]
    verb_fr = fr_sg if number == "sg" else fr_pl
    negated = rng.random() < 0.3
    if negated:
        en_verb = ["does" if number == "sg" else "do", "not"] + en_base.split()
    else:
        en_verb = (en_3sg if number == "sg" else en_base).split()
    # object: a pronoun goes in front of the verb (and inside the negation)
    if rng.random() < 0.2:
        en_obj = list(OBJECT_PRONOUNS)[rng.integers(3)]
        pron = OBJECT_PRONOUNS[en_obj]
        if pron != "les" and _vowel(verb_fr):
            pron = "l'"
        core = [pron, verb_fr]
        en_obj, fr_obj = [en_obj], []
    else:
        en_obj, fr_obj, _ = _noun_phrase(rng)
        core = [verb_fr]
    if negated:
        ne = "n'" if _vowel(core[0]) else "ne"
        fr_verb = [ne] + core + ["pas"]
    else:
        fr_verb = core
    en = en_subj + en_verb + en_obj
    fr = fr_subj + fr_verb + fr_obj
    if rng.random() < 0.35:
        en_pp, fr_pp = _prepositional_phrase(rng)
        en, fr = en + en_pp, fr + fr_pp
    return " ".join(en), " ".join(fr)


def detokenize_french(text):
    """"l' oiseau" -> "l'oiseau", for display (metrics use the tokenised form)."""
    return text.replace("' ", "'")


# ---------------------------------------------------------------------------------------
# News passages -> headlines
# ---------------------------------------------------------------------------------------

TEAMS = ["lions", "tigers", "eagles", "hawks", "wolves", "bears", "sharks", "falcons", "rovers", "giants"]
CITIES = ["paris", "lisbon", "berlin", "madrid", "rome", "vienna", "oslo", "dublin", "prague", "athens"]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
COMPANIES = ["acme", "globex", "initech", "umbrella", "hooli", "vandelay", "wonka", "stark"]
PRODUCTS = ["phones", "shoes", "cars", "toys", "chairs", "bikes", "lamps", "bread"]
PEOPLE = ["smith", "garcia", "novak", "rossi", "muller", "silva", "dubois", "jensen", "kowalski", "tanaka"]


def _pick(rng, items):
    return items[rng.integers(len(items))]


def _sample(rng, items, k):
    """k distinct items, in random order."""
    return [items[i] for i in rng.choice(len(items), k, replace=False)]


def _match(rng):
    a, b = _sample(rng, TEAMS, 2)
    city, (day, day2) = _pick(rng, CITIES), _sample(rng, DAYS, 2)
    ga, gb = int(rng.integers(0, 6)), int(rng.integers(0, 6))
    facts = [[f"the {a} played the {b} in {city} on {day} .",
              f"on {day} the {a} met the {b} in {city} ."][rng.integers(2)],
             [f"the {a} scored {ga} and the {b} scored {gb} .",
              f"{a} got {ga} goals , {b} got {gb} ."][rng.integers(2)]]
    noise = ["it rained for most of the game .", f"about {rng.integers(2, 60)} thousand fans came .",
             f"the {[a, b][rng.integers(2)]} coach praised the pitch .",
             f"the next game is on {day2} .", f"the {b} have a new striker ."]
    if ga == gb:
        headline = f"{a} and {b} draw {ga} - {gb} in {city}"
    else:
        (w, gw), (l, gl) = sorted([(a, ga), (b, gb)], key=lambda x: -x[1])
        headline = f"{w} beat {l} {gw} - {gl} in {city}"
    return facts, noise, headline


def _results(rng):
    c = _pick(rng, COMPANIES)
    x, y = (int(v) for v in rng.choice(np.arange(1, 40), 2, replace=False))
    city, product, day = _pick(rng, CITIES), _pick(rng, PRODUCTS), _pick(rng, DAYS)
    facts = [[f"{c} made a profit of {x} million this year , against {y} million last year .",
              f"last year {c} earned {y} million ; this year it made {x} million ."][rng.integers(2)]]
    noise = [f"{c} makes {product} in {city} .",
             f"its shares closed at {rng.integers(5, 90)} dollars on {day} .",
             f"the company has {rng.integers(2, 50)} thousand workers .",
             f"the boss of {c} spoke to reporters in {city} ."]
    headline = f"{c} profit {'rises' if x > y else 'falls'} to {x} million"
    return facts, noise, headline


def _election(rng):
    p, q = _sample(rng, PEOPLE, 2)
    a, b = (int(v) for v in rng.choice(np.arange(20, 70), 2, replace=False))
    city, day = _pick(rng, CITIES), _pick(rng, DAYS)
    facts = [f"voters in {city} went to the polls on {day} .",
             [f"{p} won {a} percent of the vote and {q} won {b} percent .",
              f"{q} got {b} percent , while {p} got {a} percent ."][rng.integers(2)]]
    noise = [f"turnout was {rng.integers(30, 90)} percent .", f"the count ended late on {day} .",
             f"{[p, q][rng.integers(2)]} thanked the volunteers .", "it was a calm day ."]
    w = p if a > b else q
    return facts, noise, f"{w} wins election in {city}"


def make_headline_pair(rng):
    """One (passage, headline) pair: the facts in order, with 1-3 distracting sentences
    inserted at random places."""
    facts, noise, headline = [_match, _results, _election][rng.integers(3)](rng)
    sentences = list(facts)
    for s in _sample(rng, noise, int(rng.integers(1, 4))):
        sentences.insert(int(rng.integers(0, len(sentences) + 1)), s)
    return " ".join(sentences), headline


# ---------------------------------------------------------------------------------------
# Splits and batches
# ---------------------------------------------------------------------------------------

def make_splits(make_pair, sizes, seed=0):
    """Draw distinct pairs with `make_pair(rng)` and split them into len(sizes) parts of
    the given sizes: no source appears in two splits."""
    rng = np.random.default_rng(seed)
    total, seen, pairs = sum(sizes), set(), []
    tries = 0
    while len(pairs) < total:
        src, tgt = make_pair(rng)
        tries += 1
        if src not in seen:
            seen.add(src)
            pairs.append((src, tgt))
        if tries > 50 * total:
            raise ValueError(f"could only draw {len(pairs)} distinct pairs of the {total} asked for")
    out, start = [], 0
    for n in sizes:
        out.append(pairs[start:start + n])
        start += n
    return out


class Seq2SeqData:
    """Train / valid / test pairs with source and target vocabularies (built on train, or
    one shared vocabulary), and the batch callables a Trainer draws from."""

    def __init__(self, train, valid, test, batch_size=64, shared_vocab=False):
        self.train, self.valid, self.test = train, valid, test
        self.batch_size = batch_size
        sources, targets = [s for s, _ in train], [t for _, t in train]   # train only: unseen
        if shared_vocab:                                                  # words become <unk>
            self.src_vocab = self.tgt_vocab = Vocab.build(sources + targets)
        else:
            self.src_vocab, self.tgt_vocab = Vocab.build(sources), Vocab.build(targets)
        self._encoded = {name: self.encode(pairs) for name, pairs in
                         (("train", train), ("valid", valid), ("test", test))}

    def encode(self, pairs):
        return ([self.src_vocab.encode(s) for s, _ in pairs],
                [self.tgt_vocab.encode(t, add_eos=True) for _, t in pairs])

    def max_lengths(self):
        """(longest source, longest target + EOS) over all splits."""
        src = max(len(s) for split in self._encoded.values() for s in split[0])
        tgt = max(len(t) for split in self._encoded.values() for t in split[1])
        return src, tgt

    def batch(self, split, rng):
        src, tgt = self._encoded[split]
        idx = rng.integers(0, len(src), self.batch_size)
        return seq2seq_batch([src[i] for i in idx], [tgt[i] for i in idx], self.src_vocab.pad_id)

    def train_batch(self, rng):
        return self.batch("train", rng)

    def valid_batch(self, rng):
        return self.batch("valid", rng)

    def source_batches(self, split, batch_size=256):
        """The split's sources in order, as (input_ids, attention_mask, references) chunks."""
        pairs = {"train": self.train, "valid": self.valid, "test": self.test}[split]
        src, _ = self._encoded[split]
        for i in range(0, len(src), batch_size):
            ids, mask = pad_batch(src[i:i + batch_size], self.src_vocab.pad_id)
            yield ids, mask, [t for _, t in pairs[i:i + batch_size]]
