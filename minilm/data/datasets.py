"""Small labelled data sets written for minilm and shipped inside the package (no downloads).

    load_dataset("sentiment", "train")  -> [{"text": "The soup was bland.", "label": 0}, ...]
    load_dataset("ner", "test")         -> [{"tokens": ["Maria", "Silva", "visited", "Oslo", "."],
                                             "tags": ["B-PER", "I-PER", "O", "B-LOC", "O"]}, ...]
    load_dataset("qa", "train")         -> [{"id": "qa-0007-1", "context": "...", "question": "...",
                                             "answers": {"text": ["Lisbon"], "answer_start": [24]}}, ...]

| name      | task                                   | train | test | labels                          |
|-----------|----------------------------------------|-------|------|---------------------------------|
| sentiment | review sentence -> negative/positive   |  420  |  140 | 0 negative, 1 positive          |
| ner       | word-level BIO tags                    |  280  |   80 | PER, LOC, ORG, MISC (+ O)       |
| qa        | extractive QA, SQuAD v1.1 layout       |  240  |   60 | a span of the context           |

They are small on purpose: a fine-tuning run takes minutes on a laptop CPU, which is what the
book needs; they are not benchmarks. Each one is built from hand-written phrase lists,
templates and (for sentiment) about a hundred hand-written sentences, drawn with a fixed seed,
so `python -m minilm.data.datasets` rewrites exactly the JSON Lines files under
`minilm/data/datasets/` (a test checks this). The people, companies, towns and prizes of the
QA set are made up; the NER set mixes real place and organisation names with made-up people.

How the held-out split is made:
- sentiment: the sentences are shuffled and the last quarter is the test split. Every sentence
  is different, but a test sentence can share words and templates with training sentences,
  as real reviews do. Negation ("not bad at all"), contrast ("X was great, but Y was awful":
  the clause after "but" decides) and hand-written sentences are what make it non-trivial.
- ner: sentences shuffled, 80 held out.
- qa: split by *context*, so no test question is about a passage seen in training.
"""
import json
import os
import random

DATASETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "datasets")
DATASET_NAMES = ("sentiment", "ner", "qa")
SPLITS = ("train", "test")
SEED = 20240611                               # the one seed behind every file
SENTIMENT_LABELS = ["negative", "positive"]   # label id -> name
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]


def dataset_path(name, split):
    """minilm/data/datasets/<name>_<split>.jsonl"""
    _check_name(name, split)
    return os.path.join(DATASETS_DIR, f"{name}_{split}.jsonl")


def _check_name(name, split):
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(DATASET_NAMES)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose 'train' or 'test'")


def load_dataset(name, split="train"):
    """The examples of one split as a list of dicts (see the module docstring for the fields)."""
    path = dataset_path(name, split)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: the package data was not installed "
                                "(reinstall minilm, or run `python -m minilm.data.datasets`)")
    return read_jsonl(path)


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(rows, path):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _cap(s):
    return s[:1].upper() + s[1:]


# =============================================================================================
# Sentiment: review sentences about films, products, restaurants and hotels
# =============================================================================================

_POS_ADJ = ["good", "great", "excellent", "wonderful", "fantastic", "superb", "lovely",
            "delightful", "impressive", "outstanding", "brilliant", "pleasant", "terrific",
            "enjoyable", "solid", "marvelous", "splendid", "first-rate", "fabulous", "remarkable"]
_NEG_ADJ = ["bad", "awful", "terrible", "poor", "disappointing", "mediocre", "dreadful",
            "horrible", "lousy", "unpleasant", "underwhelming", "atrocious", "shoddy", "pathetic",
            "dismal", "subpar", "abysmal", "frustrating", "second-rate", "miserable"]

# Each domain has groups of subjects that fit the same predicates ("the soup was bland",
# "our waiter ignored us all night"), plus closing remarks. Every subject is singular;
# "people" groups get no first-person frames ("I loved ...").
_DOMAINS = {
    "movie": {
        "groups": [
            {"things": ["the movie", "this film", "the sequel", "the documentary", "the remake"],
             "pos_adj": ["gripping", "moving", "hilarious", "clever", "heartfelt", "thrilling",
                         "touching", "witty", "captivating", "inventive", "powerful",
                         "beautifully shot"],
             "neg_adj": ["boring", "predictable", "confusing", "dull", "tedious", "overlong",
                         "cheesy", "pointless", "forgettable", "lifeless", "silly",
                         "painful to watch"],
             "pos_vp": ["kept me on the edge of my seat", "made me laugh out loud",
                        "had me in tears by the end", "is worth watching twice",
                        "deserves every award it gets", "stayed with me for days",
                        "had the whole theater cheering", "surprised me in the best way"],
             "neg_vp": ["put me to sleep", "made no sense at all", "was a waste of two hours",
                        "dragged on forever", "felt like a cheap copy of better films",
                        "had me checking my watch", "lost me after twenty minutes",
                        "made me want to walk out"]},
            {"things": ["the plot", "the script", "the ending", "the dialogue", "the final scene",
                        "the twist", "the story"],
             "pos_adj": ["clever", "gripping", "moving", "witty", "touching", "inventive",
                         "surprising", "sharp"],
             "neg_adj": ["predictable", "confusing", "dull", "cheesy", "pointless", "clumsy",
                         "silly", "lazy"],
             "pos_vp": ["kept me guessing until the very end", "made me laugh out loud",
                        "had me in tears", "stayed with me for days",
                        "surprised me in the best way"],
             "neg_vp": ["made no sense at all", "fell completely flat",
                        "lost me after twenty minutes", "felt like it was written in a weekend",
                        "was obvious from the start"]},
            {"people": True, "things": ["the acting", "the lead actress", "the cast", "the villain",
                        "the soundtrack", "the cinematography"],
             "pos_adj": ["stunning", "charming", "powerful", "captivating", "magnetic",
                         "convincing"],
             "neg_adj": ["wooden", "flat", "forgettable", "lifeless", "unconvincing", "cheesy"],
             "pos_vp": ["carried the whole film", "deserves every award it gets",
                        "gave me chills", "stole every scene"],
             "neg_vp": ["could not save the film", "felt completely phoned in",
                        "got on my nerves", "was the weakest part of the film"]},
        ],
        "pos_end": ["I can't wait to see it again.", "Go see it.", "A must-watch.",
                    "I would watch it again tomorrow."],
        "neg_end": ["Skip this one.", "Wait for it to be free.", "I walked out halfway.",
                    "I want those two hours back."],
    },
    "product": {
        "groups": [
            {"things": ["this blender", "this vacuum", "the laptop", "the coffee maker",
                        "this kettle", "the printer", "this phone", "the camera", "the speaker",
                        "this headset", "the toaster"],
             "pos_adj": ["sturdy", "reliable", "fast", "well made", "easy to use", "quiet",
                         "durable", "responsive", "sleek", "handy", "dependable", "good value",
                         "a joy to use"],
             "neg_adj": ["flimsy", "cheap", "noisy", "slow", "unreliable", "fragile",
                         "overpriced", "useless", "defective", "clunky", "a pain to use",
                         "poorly made", "faulty"],
             "pos_vp": ["works perfectly", "was worth every penny",
                        "arrived early and works like a charm", "does exactly what it promises",
                        "has made my mornings so much easier",
                        "still works like new after a year", "paid for itself within a month"],
             "neg_vp": ["broke after two days", "stopped working within a week",
                        "fell apart in the first month", "was a complete waste of money",
                        "overheats every single time", "had to be returned twice",
                        "died after an hour"]},
            {"things": ["the battery", "the charger", "the power bank"],
             "pos_adj": ["reliable", "long-lasting", "fast", "dependable"],
             "neg_adj": ["weak", "unreliable", "slow", "useless"],
             "pos_vp": ["lasts all day", "charges in minutes", "easily gets me through a weekend"],
             "neg_vp": ["died after an hour", "never charged properly", "barely lasts a morning"]},
            {"things": ["the screen", "the keyboard", "the handle", "the lid", "the zipper"],
             "pos_adj": ["sturdy", "solid", "responsive", "well made", "smooth"],
             "neg_adj": ["flimsy", "fragile", "wobbly", "loose", "cheap", "poorly made"],
             "pos_vp": ["still looks new after a year", "holds up really well",
                        "feels built to last"],
             "neg_vp": ["broke after two days", "cracked within a week",
                        "came loose in the first month"]},
            {"things": ["the mattress", "the office chair", "the sofa"],
             "pos_adj": ["comfortable", "supportive", "sturdy", "cozy"],
             "neg_adj": ["uncomfortable", "lumpy", "flimsy", "saggy"],
             "pos_vp": ["fixed my back pain", "still feels new after a year",
                        "was worth every penny"],
             "neg_vp": ["started sagging after a month", "gave me a sore back",
                        "fell apart in the first month"]},
            {"people": True, "things": ["the customer support", "the seller", "the delivery service"],
             "pos_adj": ["helpful", "quick", "friendly", "responsive", "professional"],
             "neg_adj": ["unhelpful", "rude", "slow", "useless", "unresponsive"],
             "pos_vp": ["sorted out my problem in minutes", "replaced it without any fuss",
                        "went above and beyond"],
             "neg_vp": ["never answered my emails", "kept me on hold for an hour",
                        "refused to give me a refund"]},
        ],
        "pos_end": ["Would buy again.", "Five stars.", "Buy it.", "I ordered a second one."],
        "neg_end": ["Returned it.", "I want my money back.", "Do not buy.", "One star."],
    },
    "restaurant": {
        "groups": [
            {"things": ["the food", "the pasta", "the dessert", "the steak", "the soup",
                        "the pizza", "the curry", "the sushi", "the bread", "the chef's special",
                        "the brunch", "the lasagna"],
             "pos_adj": ["delicious", "fresh", "tasty", "flavorful", "perfectly cooked",
                         "generous", "mouth-watering", "crisp", "spot on"],
             "neg_adj": ["bland", "cold", "greasy", "stale", "overcooked", "salty", "soggy",
                         "tasteless", "burnt", "rubbery", "lukewarm", "inedible", "overpriced"],
             "pos_vp": ["was cooked to perfection", "was the best I have had in years",
                        "melted in my mouth", "was worth the drive",
                        "keeps us coming back every week"],
             "neg_vp": ["made me sick the next day", "took over an hour to arrive",
                        "tasted like it came out of a can", "was swimming in oil",
                        "was sent back twice", "left a bad taste in my mouth"]},
            {"people": True, "things": ["the service", "our waiter", "the staff", "the hostess", "the manager"],
             "pos_adj": ["friendly", "attentive", "welcoming", "warm", "quick", "charming",
                         "professional"],
             "neg_adj": ["rude", "slow", "careless", "unfriendly", "dismissive", "clueless"],
             "pos_vp": ["made us feel right at home", "made the whole evening special",
                        "remembered our names from last time", "could not have been kinder"],
             "neg_vp": ["ignored us all night", "ruined our anniversary dinner",
                        "forgot half of our order", "argued with us about the bill"]},
            {"things": ["the atmosphere", "the terrace", "the dining room", "the place"],
             "pos_adj": ["cozy", "charming", "relaxing", "lively", "inviting"],
             "neg_adj": ["noisy", "cramped", "dirty", "gloomy", "chaotic", "stuffy"],
             "pos_vp": ["made the whole evening special", "was perfect for a first date"],
             "neg_vp": ["was so loud we could not talk", "smelled of old grease"]},
        ],
        "pos_end": ["We will be back.", "Book a table now.", "Highly recommended!",
                    "Our new favorite place."],
        "neg_end": ["Never again.", "Eat somewhere else.", "We won't be back.",
                    "Save your money."],
    },
    "hotel": {
        "groups": [
            {"things": ["the room", "the bathroom", "the lobby", "the pool", "the hotel",
                        "the suite"],
             "pos_adj": ["spotless", "spacious", "quiet", "comfortable", "modern", "immaculate",
                         "peaceful", "charming", "relaxing"],
             "neg_adj": ["dirty", "cramped", "noisy", "musty", "filthy", "shabby", "tiny",
                         "freezing", "run-down", "dated"],
             "pos_vp": ["made our stay unforgettable", "was worth the price",
                        "felt like a home away from home", "looked even better than the photos"],
             "neg_vp": ["smelled of smoke", "looked nothing like the photos",
                        "had no hot water for two days", "kept us awake all night"]},
            {"people": True, "things": ["the front desk", "the staff", "the concierge", "the receptionist"],
             "pos_adj": ["helpful", "friendly", "quick", "welcoming", "professional"],
             "neg_adj": ["unhelpful", "rude", "slow", "careless", "clueless"],
             "pos_vp": ["upgraded us for free", "sorted everything out in minutes",
                        "gave us wonderful tips for the city"],
             "neg_vp": ["charged us twice", "lost our booking", "kept us waiting for an hour"]},
            {"things": ["the view", "the location"],
             "pos_adj": ["breathtaking", "convenient", "perfect", "stunning"],
             "neg_adj": ["disappointing", "inconvenient", "depressing", "noisy"],
             "pos_vp": ["was worth the trip on its own", "made every morning a pleasure"],
             "neg_vp": ["was nothing but a parking lot", "was miles from anything"]},
            {"things": ["the breakfast", "the buffet"],
             "pos_adj": ["generous", "delicious", "fresh", "varied"],
             "neg_adj": ["stale", "cold", "limited", "sad"],
             "pos_vp": ["made every morning a pleasure", "had something for everyone"],
             "neg_vp": ["had been picked clean by eight", "was the same every single day"]},
        ],
        "pos_end": ["We would stay here again.", "Book it.", "A perfect getaway."],
        "neg_end": ["Stay somewhere else.", "Never again.", "Avoid this place."],
    },
}

_INTENSIFIERS = ["", "", "", "really ", "very ", "truly ", "absolutely ", "incredibly ",
                 "extremely ", "quite ", "genuinely ", "surprisingly ", "so "]
_COPULAS = ["was", "was", "is", "seemed", "turned out to be", "felt"]
_OPENERS = ["", "", "", "", "Honestly, ", "Overall, ", "To be honest, ", "I have to say ",
            "In my opinion, ", "Frankly, ", "All in all, ", "For what it's worth, ",
            "On our last visit, ", "This time, "]
_POS_END_GENERIC = ["I would definitely recommend it.", "I can't recommend it enough.",
                    "No complaints at all.", "Nothing to complain about.", "I have no regrets.",
                    "Totally worth it."]
_NEG_END_GENERIC = ["I would not recommend it.", "I can't recommend it.", "Not worth it.",
                    "Such a letdown.", "What a disappointment.", "Never again."]
# negation: (frame, label). "{adj}" is filled from the *opposite* polarity
_NEG_OF_POS = ["{s} {cop} not {adj}", "{s} {cop} not very {adj}", "{s} {cop} not particularly {adj}",
               "{s} {cop} far from {adj}", "{s} {cop} anything but {adj}", "{s} {cop} never {adj}",
               "I would not call {s} {adj}", "I can't say {s} {cop} {adj}",
               "nobody would call {s} {adj}"]
_POS_OF_NEG = ["{s} {cop} not {adj} at all", "{s} {cop} never {adj}", "{s} {cop} anything but {adj}",
               "{s} {cop} not {adj} in the slightest", "{s} {cop} not the least bit {adj}",
               "I was worried {s} would be {adj}, but it was not",
               "I expected {s} to be {adj}, and it wasn't"]
_FIRST_PERSON_POS = ["I loved {s}", "I really enjoyed {s}", "I was impressed by {s}",
                     "I fell in love with {s}", "I was blown away by {s}", "we adored {s}",
                     "I did not expect to love {s}, but I did", "my whole family loved {s}"]
_FIRST_PERSON_NEG = ["I hated {s}", "I was disappointed by {s}", "I was let down by {s}",
                     "I could not stand {s}", "I regretted paying for {s}",
                     "I did not enjoy {s} at all", "I did not like {s} one bit",
                     "I expected to love {s}, but I didn't"]

# Written by hand, to add phrasing no template has. label 1 = positive, 0 = negative.
_HANDWRITTEN = [
    ("I went in with low expectations and walked out grinning.", 1),
    ("Not a single dull moment from start to finish.", 1),
    ("My kids have watched it five times and still ask for more.", 1),
    ("The waiter remembered our order from last time, which was a lovely touch.", 1),
    ("It is not cheap, but it is worth it.", 1),
    ("Setup took two minutes and it has worked flawlessly since.", 1),
    ("The best twenty dollars I have spent this year.", 1),
    ("Every dish arrived hot, and every single one was a hit.", 1),
    ("I laughed, I cried, and I would happily pay to see it again.", 1),
    ("The staff went out of their way to help us with a late check-out.", 1),
    ("Battery life is even better than advertised.", 1),
    ("A small place with a big heart and an even bigger menu.", 1),
    ("The director takes a tired idea and makes it feel brand new.", 1),
    ("It survived a fall down the stairs without a scratch.", 1),
    ("We stumbled in by accident and it turned out to be the highlight of our trip.", 1),
    ("Quiet, clean and five minutes from the station: exactly what we needed.", 1),
    ("Instructions were clear and everything fit together the first time.", 1),
    ("The last twenty minutes are some of the best cinema I have seen.", 1),
    ("Portions are huge and the prices are fair.", 1),
    ("I was skeptical at first, but now I use it every day.", 1),
    ("The sound quality blew me away for the price.", 1),
    ("Our room had a balcony over the harbor and the sunsets were unreal.", 1),
    ("The lead gives the performance of her career.", 1),
    ("They even packed our leftovers with a handwritten thank-you note.", 1),
    ("Three years later it still runs like the day I bought it.", 1),
    ("Smart, funny and surprisingly tender.", 1),
    ("The pancakes alone are worth the trip.", 1),
    ("It charges in under an hour and lasts for days.", 1),
    ("The bed was so comfortable that we overslept every morning.", 1),
    ("I keep thinking about that final shot.", 1),
    ("Customer service replaced the broken part within two days, no questions asked.", 1),
    ("The chef came out to greet every table, which made the night.", 1),
    ("Not perfect, but easily the best phone I have owned.", 1),
    ("Even my picky teenager asked for seconds.", 1),
    ("There is not a wasted scene in the whole film.", 1),
    ("Nothing fancy, just honest food done right.", 1),
    ("The view from the pool was worth every cent.", 1),
    ("It does one thing and does it brilliantly.", 1),
    ("I have recommended this place to all my friends.", 1),
    ("A rare sequel that is better than the original.", 1),
    ("Light enough to carry all day, tough enough to survive a hiking trip.", 1),
    ("The reception staff upgraded us for free because it was our honeymoon.", 1),
    ("I did not want it to end.", 1),
    ("Cheap, cheerful and absolutely delicious.", 1),
    ("It replaced three gadgets on my kitchen counter.", 1),
    ("The music alone is reason enough to buy a ticket.", 1),
    ("We left full, happy and already planning our next visit.", 1),
    ("Worth every minute of the three-hour running time.", 1),
    ("I wanted to like it, I really did.", 0),
    ("Two hours of my life I will never get back.", 0),
    ("The photos on the website look nothing like the real thing.", 0),
    ("We waited forty minutes for a table we had reserved.", 0),
    ("It looks nice, but it stopped charging after a week.", 0),
    ("The jokes fall flat and the story goes nowhere.", 0),
    ("The manager argued with us instead of fixing the problem.", 0),
    ("It rattles so loudly that I can't hear the television.", 0),
    ("The trailer was better than the film.", 0),
    ("Our soup arrived after the main course, and it was cold.", 0),
    ("The room smelled like wet carpet for our entire stay.", 0),
    ("Half of the buttons stopped responding after the first update.", 0),
    ("A great cast wasted on a lazy script.", 0),
    ("They charged us for drinks we never ordered.", 0),
    ("It looked great in the store and fell apart at home.", 0),
    ("The walls were so thin we could hear every word next door.", 0),
    ("I have seen more convincing acting in a school play.", 0),
    ("We found a hair in the salad and nobody apologized.", 0),
    ("The app crashes every time I try to connect it.", 0),
    ("Beautiful to look at, but there is nothing underneath.", 0),
    ("The breakfast buffet had been picked clean by eight.", 0),
    ("After three repairs I finally gave up and bought a different brand.", 0),
    ("The twist is obvious from the first scene.", 0),
    ("Tiny portions at big-city prices.", 0),
    ("Check-in took an hour because the computer system was down.", 0),
    ("The zipper broke the first time I used it.", 0),
    ("Nothing happens for ninety minutes, and then it just ends.", 0),
    ("The fries were limp and the burger was raw in the middle.", 0),
    ("There was construction outside our window from seven every morning.", 0),
    ("It promised twelve hours of battery and gave me four.", 0),
    ("By the halfway point I had stopped caring about any of the characters.", 0),
    ("The waiter rolled his eyes when we asked for the menu.", 0),
    ("The air conditioning dripped onto the bed all night.", 0),
    ("Customer support kept me on hold for two hours and then hung up.", 0),
    ("Loud, long and completely empty.", 0),
    ("I have had better coffee from a gas station.", 0),
    ("The pool was closed for the whole week without any warning.", 0),
    ("The lid does not close properly, so everything leaks.", 0),
    ("The sequel nobody asked for, and it shows.", 0),
    ("We were seated next to the kitchen door and ignored for half an hour.", 0),
    ("The sheets had stains on them when we arrived.", 0),
    ("It works, but only if you hold it at exactly the right angle.", 0),
    ("A promising first act that collapses into chaos.", 0),
    ("The dessert was clearly frozen and microwaved.", 0),
    ("The lift was broken and our room was on the ninth floor.", 0),
    ("Mine arrived with a cracked screen and the replacement did too.", 0),
    ("Not one of the jokes landed.", 0),
    ("They forgot half of our order and still charged the full price.", 0),
]


def _sentiment_sentence(rng, label):
    """One templated review sentence with the given label (1 positive, 0 negative)."""
    d = _DOMAINS[rng.choice(sorted(_DOMAINS))]
    pos, neg = label == 1, label == 0
    group = rng.choice(d["groups"])

    def adj(g, positive):
        return rng.choice(g["pos_adj"] + _POS_ADJ if positive else g["neg_adj"] + _NEG_ADJ)

    def vp(g, positive):
        return rng.choice(g["pos_vp"] if positive else g["neg_vp"])

    s = rng.choice(group["things"])
    form = rng.choices(["adj", "vp", "negation", "contrast", "first_person"],
                       weights=[25, 15, 22, 23, 15])[0]
    if form == "first_person" and group.get("people"):   # not "I loved our waiter"
        form = "vp"
    if form == "adj":
        text = (f"{rng.choice(_OPENERS)}{s} {rng.choice(_COPULAS)} "
                f"{rng.choice(_INTENSIFIERS)}{adj(group, pos)}.")
    elif form == "vp":
        text = f"{rng.choice(_OPENERS)}{s} {vp(group, pos)}."
    elif form == "negation":
        frame = rng.choice(_POS_OF_NEG if pos else _NEG_OF_POS)
        text = frame.format(s=s, cop=rng.choice(["was", "is"]), adj=adj(group, not pos)) + "."
    elif form == "contrast":                        # the main clause decides the label
        group2 = rng.choice([g for g in d["groups"] if g is not group])   # another aspect
        s2 = rng.choice(group2["things"])
        first = (f"{s} {rng.choice(_COPULAS)} {adj(group, neg)}" if rng.random() < 0.6
                 else f"{s} {vp(group, neg)}")
        second = (f"{s2} {rng.choice(_COPULAS)} {rng.choice(_INTENSIFIERS)}{adj(group2, pos)}"
                  if rng.random() < 0.6 else f"{s2} {vp(group2, pos)}")
        joiner = rng.choice(["but", "but", "but", "although", "even though"])
        if joiner == "but":
            text = f"{first}, but {second}."
        else:
            text = f"{_cap(joiner)} {first}, {second}."
    else:
        text = rng.choice(_FIRST_PERSON_POS if pos else _FIRST_PERSON_NEG).format(s=s) + "."
    text = _cap(text)
    if rng.random() < 0.3:
        ends = (d["pos_end"] + _POS_END_GENERIC) if pos else (d["neg_end"] + _NEG_END_GENERIC)
        text += " " + rng.choice(ends)
    return text


def build_sentiment(seed=SEED, n_generated=464, n_test=140):
    """-> (train, test): lists of {"text", "label"}; labels balanced, every text unique."""
    rng = random.Random(seed)
    seen = {t for t, _ in _HANDWRITTEN}
    rows = [{"text": t, "label": y} for t, y in _HANDWRITTEN]
    for i in range(n_generated):
        label = i % 2
        for _ in range(100):                       # redraw duplicates
            text = _sentiment_sentence(rng, label)
            if text not in seen:
                break
        seen.add(text)
        rows.append({"text": text, "label": label})
    rng.shuffle(rows)
    return rows[:-n_test], rows[-n_test:]


# =============================================================================================
# NER: word-level BIO tags, PER / LOC / ORG / MISC (CoNLL-2003's four types)
# =============================================================================================

_FIRST_F = ["Maria", "Aisha", "Fatima", "Yuki", "Olga", "Priya", "Elena", "Sara", "Hannah", "Mei",
            "Grace", "Nadia", "Amara", "Sofia", "Leila", "Ingrid", "Chloe", "Zanele", "Agnieszka",
            "Noor"]
_FIRST_M = ["John", "Wei", "Lars", "Carlos", "Pierre", "Kwame", "Tomas", "Ahmed", "Diego", "Ivan",
            "Omar", "Lukas", "Kenji", "David", "Mateo", "Samuel", "Raj", "Marco", "Tariq", "Felix"]
_FIRST = _FIRST_F + _FIRST_M
_LAST = ["Gonzalez", "Smith", "Okafor", "Zhang", "Johansson", "Haddad", "Silva", "Tanaka",
         "Petrova", "Dubois", "Sharma", "Mensah", "Rossi", "Novak", "Berg", "Khan", "Fischer",
         "Alvarez", "Chen", "Volkov", "Kim", "Nasser", "Morales", "Weber", "Adeyemi", "Sato",
         "Costa", "Miller", "Rahman", "Lopez", "Kowalski", "Nguyen", "O'Brien", "Van Dijk",
         "Ndlovu", "Moreau", "Lindqvist", "Park", "Hughes", "Ferreira"]
_CITIES = ["Paris", "New York", "Tokyo", "Lagos", "Berlin", "São Paulo", "Cairo", "Mumbai",
           "Sydney", "Toronto", "Mexico City", "Nairobi", "Oslo", "Buenos Aires", "Seoul", "Lisbon",
           "Rio de Janeiro", "Hong Kong", "Istanbul", "Vienna", "Chicago", "San Francisco",
           "Kraków", "Zürich", "Accra", "Hanoi", "Dublin", "Melbourne", "Marseille", "Osaka"]
_COUNTRIES = ["Kenya", "Brazil", "Canada", "Germany", "India", "Japan", "South Africa",
              "New Zealand", "Norway", "Mexico", "Vietnam", "Ireland", "Poland", "Egypt", "Chile",
              "Portugal", "Sweden", "Ghana", "Argentina", "Australia"]
_ORGS = ["Google", "Microsoft", "Reuters", "Toyota", "Siemens", "Nokia", "Airbus", "Samsung",
         "Greenpeace", "NASA", "Unilever", "Deutsche Bank", "Tesla", "Interpol", "UNESCO",
         "Harvard University", "Oxford University", "Amnesty International", "Real Madrid",
         "Red Cross", "World Bank", "European Union", "United Nations", "Bank of England",
         "World Health Organization", "Northwind Labs", "Bluefin Analytics", "Castellan Foods",
         "Helios Energy", "Orbis Aerospace", "Kestrel Motors", "Lumen Health"]
_NATIONALITIES = ["German", "French", "Japanese", "Brazilian", "Nigerian", "Canadian", "Indian",
                  "Mexican", "Swedish", "Kenyan", "Korean", "Italian", "Polish", "Egyptian",
                  "Australian", "Irish", "Chilean", "Vietnamese"]
_LANGUAGES = ["English", "Spanish", "Mandarin", "Arabic", "Portuguese", "Swahili", "Hindi",
              "French", "German", "Japanese", "Russian", "Korean"]
_EVENTS = ["Olympic Games", "World Cup", "Tour de France", "Venice Biennale", "Cannes Film Festival",
           "Winter Olympics", "Champions League", "Eurovision Song Contest"]
_AWARDS = ["Nobel Prize", "Booker Prize", "Pulitzer Prize", "Fields Medal", "Turing Award",
           "Golden Globe", "Grammy Award", "Palme d'Or"]
_HOLIDAYS = ["Christmas", "Ramadan", "Easter", "Diwali", "Thanksgiving", "Hanukkah",
             "Lunar New Year"]
_PRODUCTS = ["iPhone", "PlayStation", "Galaxy S24", "Model 3", "Kindle", "Windows 11"]
_DOCS = ["Paris Agreement", "Geneva Convention", "Kyoto Protocol", "Schengen Agreement"]
_JOBS = ["engineer", "lawyer", "economist", "nurse", "journalist", "architect", "designer",
         "researcher", "teacher", "pilot"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

# "{TYPE:pool}" is an entity slot, filled from that pool and tagged TYPE; "{pool}" is plain text
_NER_TEMPLATES = [
    "{PER:person} joined {ORG:org} as a senior {job} in {year} .",
    "{ORG:org} opened a new office in {LOC:city} on {day} .",
    "{PER:person} , a {MISC:nationality} {job} , spoke at a conference in {LOC:city} .",
    "The {MISC:event} will be held in {LOC:city} in {year} .",
    "{PER:person} won the {MISC:award} in {year} for work on climate models .",
    "According to {ORG:org} , prices in {LOC:country} rose by {num} percent last year .",
    "{PER:person} and {PER:person} met in {LOC:city} to discuss a deal between {ORG:org} and {ORG:org} .",
    "Shares of {ORG:org} fell sharply after {PER:person} resigned as chief executive .",
    "{PER:person} moved from {LOC:city} to {LOC:city} in {year} .",
    "{PER:person} speaks {MISC:language} and {MISC:language} fluently .",
    "Police in {LOC:city} said {PER:person} had been released on {day} .",
    "{ORG:org} said it would cut {num} jobs in {LOC:country} .",
    "{PER:person} told reporters that the {MISC:product} launch would be delayed .",
    "Dr. {PER:person} leads a research group at {ORG:org} .",
    "Tourists from {LOC:country} flocked to {LOC:city} during {MISC:holiday} .",
    "{PER:person} was born in {LOC:city} and studied at {ORG:org} .",
    "Last week {PER:person} visited the {ORG:org} headquarters in {LOC:city} .",
    "{ORG:org} and {ORG:org} announced a partnership on {day} .",
    "In {year} , {PER:person} became the first {MISC:nationality} woman to win the {MISC:award} .",
    "The film , shot in {LOC:country} , opens in {MISC:nationality} cinemas in March .",
    "{PER:person} said the {MISC:doc} would change little for farmers in {LOC:country} .",
    "The {MISC:nationality} delegation left {LOC:city} on {day} without an agreement .",
    "Mr. {PER:last} , who works for {ORG:org} , declined to comment .",
    "The meeting was postponed until next {day} because of the storm .",
    "Prices for fresh fruit have risen by {num} percent since {day} , traders said .",
    "{PER:female_first} celebrated {MISC:holiday} with her family in {LOC:country} .",
    "A spokesperson for {ORG:org} confirmed the news on {day} .",
    "{PER:person} , who grew up in {LOC:country} , now teaches {MISC:language} in {LOC:city} .",
    "Fans in {LOC:city} watched the {MISC:event} final on giant screens .",
    "The new {MISC:product} went on sale in {LOC:city} and {LOC:city} on {day} .",
]


def _ner_pool(rng, pool):
    if pool == "person":
        return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    return rng.choice({
        "first": _FIRST, "female_first": _FIRST_F, "last": _LAST, "city": _CITIES, "country": _COUNTRIES, "org": _ORGS,
        "nationality": _NATIONALITIES, "language": _LANGUAGES, "event": _EVENTS,
        "award": _AWARDS, "holiday": _HOLIDAYS, "product": _PRODUCTS, "doc": _DOCS,
        "job": _JOBS, "day": _DAYS,
        "year": [str(y) for y in range(1985, 2025)],
        "num": ["200", "1,500", "12", "3.5", "40", "seven", "300"],
    }[pool])


def _ner_sentence(rng, template):
    """Fill a template -> (tokens, tags). Words are split on spaces; an entity of n words is
    tagged B-TYPE I-TYPE ... (the template already puts spaces around punctuation)."""
    tokens, tags = [], []
    for part in template.split(" "):
        if part.startswith("{") and part.endswith("}"):
            slot = part[1:-1]
            typ, pool = slot.split(":") if ":" in slot else (None, slot)
            words = _ner_pool(rng, pool).split(" ")
            tokens.extend(words)
            tags.extend(["O"] * len(words) if typ is None
                        else [f"B-{typ}"] + [f"I-{typ}"] * (len(words) - 1))
        else:
            tokens.append(part)
            tags.append("O")
    return tokens, tags


def build_ner(seed=SEED, n=360, n_test=80):
    """-> (train, test): lists of {"tokens", "tags"}, every sentence unique."""
    rng = random.Random(seed + 1)
    rows, seen, draws = [], set(), 0
    while len(rows) < n:
        template = _NER_TEMPLATES[draws % len(_NER_TEMPLATES)]
        draws += 1
        tokens, tags = _ner_sentence(rng, template)
        if " ".join(tokens) in seen:           # a repeat: move on to the next template
            continue
        seen.add(" ".join(tokens))
        rows.append({"tokens": tokens, "tags": tags})
    rng.shuffle(rows)
    return rows[:-n_test], rows[-n_test:]


# =============================================================================================
# QA: short made-up biographies and town descriptions, three questions each
# =============================================================================================

_FIELDS = ["chemistry", "marine biology", "civil engineering", "economics", "linguistics",
           "astrophysics", "medicine", "architecture", "computer science", "philosophy",
           "music composition", "agricultural science", "mathematics", "journalism", "geology"]
_UNIS = ["Kyoto University", "McGill University", "Uppsala University", "the University of Lagos",
         "Imperial College London", "the University of Cape Town", "Seoul National University",
         "the University of Vienna", "Trinity College Dublin", "the University of Chile",
         "Delft University of Technology", "the University of Melbourne", "Jagiellonian University"]
_COMPANIES = ["Northwind Labs", "Helios Energy", "Bluefin Analytics", "Marlow and Finch",
              "Castellan Foods", "Orbis Aerospace", "Greywater Shipping", "Lumen Health",
              "Tern Robotics", "Saltmarsh Press", "Kestrel Motors", "Arden Pharmaceuticals",
              "Copperleaf Studios", "Vantage Water"]
_PRIZES = ["Harlow Prize", "Vance Medal", "Lindqvist Award", "Meridian Prize",
           "Golden Compass Award", "Ashford Medal", "Corvin Prize"]
_ACHIEVEMENTS = ["research on drought-resistant crops", "new method for cleaning rivers",
                 "work on cheaper solar panels", "study of coastal erosion",
                 "dictionary of endangered languages", "designs for earthquake-proof schools",
                 "faster test for malaria", "research on deep-sea bacteria"]
_INSTRUMENTS = ["cello", "violin", "piano", "saxophone", "guitar", "flute", "drums", "harp",
                "trumpet", "accordion"]
_YEARS_WORKED = ["three years", "five years", "seven years", "ten years", "twelve years",
                 "two decades"]
_TOWNS = ["Varnholm", "Brisk Harbor", "Eastmere", "Caldera Springs", "Toskavik", "Millbrook",
          "Saint Aubrel", "Quillon", "Ravensholt", "Puerto Lenta", "Kirrawee Flats", "Dunmore Bay",
          "Oakridge Falls", "Lindau Creek", "Montevar", "Haverstead", "Port Ellery", "Zelnik",
          "Ashcombe", "Northgate", "Corrib Mill", "Bellwater", "Santa Irene", "Holmvik",
          "Kerrow", "Fennick", "Arlo Point", "Westhaven", "Tamsin Vale", "Greyhollow"]
_TOWN_PRODUCTS = ["smoked fish", "wool blankets", "blue pottery", "apple cider", "hand-made boats",
                  "goat cheese", "copper bells", "lavender honey", "wooden toys", "sea salt"]
_BUILDINGS = ["Old Granary", "Church of Saint Brendan", "Harbor Lighthouse", "Merchant Hall",
              "Stone Bridge Inn", "Clock Tower", "Bishop's Mill", "Customs House"]
_FESTIVALS = ["kite festival", "lantern parade", "folk music festival", "boat race",
              "harvest fair", "jazz weekend", "chess tournament", "film festival"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]
_POPULATIONS = ["4,000", "7,500", "12,000", "18,000", "23,000", "31,000", "45,000", "60,000"]
_COASTS = ["northern", "southern", "eastern", "western"]

_BIO_SENTENCES = {       # one sentence per fact; each group has a few phrasings
    "birth": ["{name} was born in {city1} in {year1}.",
              "{name} was born in {year1} in the city of {city1}.",
              "Born in {city1} in {year1}, {name} grew up in a family of teachers."],
    "study": ["{Pron} studied {field} at {uni}.",
              "After school, {pron} went to {uni}, where {pron} earned a degree in {field}.",
              "{Pron} later took a degree in {field} at {uni}."],
    "work": ["After graduating, {pron} worked for {company} for {years}.",
             "{Pron} spent {years} at {company}, first as an intern and later as a team leader.",
             "{Pron} then joined {company}, where {pron} stayed for {years}."],
    "prize": ["In {year2}, {pron} received the {prize} for {poss} {achievement}.",
              "{Pron} won the {prize} in {year2} for {poss} {achievement}."],
    "move": ["In {year3}, {pron} moved to {city2}, where {pron} still lives.",
             "{Pron} has lived in {city2} since {year3}."],
    "hobby": ["In {poss} free time, {pron} plays the {instrument}.",
              "{Pron} is also a keen {instrument} player."],
}
_BIO_QUESTIONS = {       # slot -> question phrasings; the answer is that slot's text
    "city1": ["Where was {name} born?", "In which city was {name} born?",
              "What is {name}'s birthplace?"],
    "year1": ["When was {name} born?", "In what year was {name} born?"],
    "field": ["What did {name} study?", "Which subject did {name} study?",
              "What was {name}'s field of study?"],
    "uni": ["Which university did {name} attend?", "Where did {name} study?"],
    "company": ["Which company did {name} work for?", "Which company employed {name}?"],
    "years": ["How long did {name} work for {company}?", "How many years did {name} spend at {company}?"],
    "prize": ["What award did {name} receive?", "Which prize did {name} win?"],
    "year2": ["When did {name} win the {prize}?", "In which year did {name} receive the {prize}?"],
    "achievement": ["What did {name} win the {prize} for?"],
    "city2": ["Where does {name} live now?", "Which city did {name} move to?"],
    "year3": ["Since when has {name} lived in {city2}?", "When did {name} move to {city2}?"],
    "instrument": ["What instrument does {name} play?", "Which instrument does {name} play?"],
}
_TOWN_SENTENCES = [
    "{town} is a small town on the {coast} coast of {country}.",
    "It has about {population} inhabitants.",
    "The town is known for its {product}, sold all over the region.",
    "Its oldest building, the {building}, dates from {year}.",
    "Every {month}, {town} hosts a {festival} that draws visitors from across the country.",
]
_TOWN_QUESTIONS = {
    "country": ["In which country is {town}?", "Which country is {town} in?"],
    "population": ["How many people live in {town}?", "What is the population of {town}?"],
    "product": ["What is {town} known for?", "What is {town} famous for?"],
    "building": ["What is the oldest building in {town}?"],
    "year": ["When was the {building} built?", "From which year does the {building} date?"],
    "month": ["In which month does {town} hold its {festival}?", "When is the {festival} in {town}?"],
    "festival": ["What event does {town} host every {month}?"],
}


def _fill(template, values, spans, offset):
    """Format `template` with `values`, recording the character span of every slot filled in
    spans[slot] (first occurrence only) relative to the whole context (`offset` = where this
    piece starts). Returns the filled text."""
    out, i = [], 0
    while True:
        j = template.find("{", i)
        if j < 0:
            out.append(template[i:])
            break
        k = template.index("}", j)
        out.append(template[i:j])
        slot = template[j + 1:k]
        start = offset + sum(map(len, out))
        text = values[slot]
        if slot not in spans:
            spans[slot] = (start, text)
        out.append(text)
        i = k + 1
    return "".join(out)


def _qa_context(rng, kind, index):
    """-> (context, values, spans, question table) for one made-up biography or town."""
    if kind == "bio":
        female = rng.random() < 0.5
        first = rng.choice(_FIRST_F if female else _FIRST_M)
        values = {"name": f"{first} {rng.choice(_LAST)}",
                  "city1": rng.choice(_CITIES), "year1": str(rng.randint(1940, 1990)),
                  "field": rng.choice(_FIELDS), "uni": rng.choice(_UNIS),
                  "company": rng.choice(_COMPANIES), "years": rng.choice(_YEARS_WORKED),
                  "prize": rng.choice(_PRIZES), "achievement": rng.choice(_ACHIEVEMENTS),
                  "city2": rng.choice(_CITIES), "instrument": rng.choice(_INSTRUMENTS),
                  "pron": "she" if female else "he", "Pron": "She" if female else "He",
                  "poss": "her" if female else "his"}
        while values["city2"] == values["city1"]:
            values["city2"] = rng.choice(_CITIES)
        y1 = int(values["year1"])
        values["year2"] = str(rng.randint(y1 + 30, min(y1 + 55, 2023)))
        values["year3"] = str(rng.randint(y1 + 25, min(y1 + 60, 2023)))
        while values["year3"] == values["year2"]:
            values["year3"] = str(rng.randint(y1 + 25, min(y1 + 60, 2023)))
        groups = ["birth", "study", "work", "prize"] + rng.sample(["move", "hobby"], rng.randint(1, 2))
        templates = [rng.choice(_BIO_SENTENCES[g]) for g in groups]
        questions = _BIO_QUESTIONS
    else:
        values = {"town": _TOWNS[index % len(_TOWNS)], "coast": rng.choice(_COASTS),
                  "country": rng.choice(_COUNTRIES), "population": rng.choice(_POPULATIONS),
                  "product": rng.choice(_TOWN_PRODUCTS), "building": rng.choice(_BUILDINGS),
                  "year": str(rng.randint(1350, 1880)), "month": rng.choice(_MONTHS),
                  "festival": rng.choice(_FESTIVALS)}
        templates = list(_TOWN_SENTENCES)
        questions = _TOWN_QUESTIONS
    spans, parts, offset = {}, [], 0
    for t in templates:
        piece = _fill(t, values, spans, offset)
        parts.append(piece)
        offset += len(piece) + 1                  # the joining space
    return " ".join(parts), values, spans, questions


def build_qa(seed=SEED, n_bios=70, n_towns=30, questions_per_context=3, n_test_contexts=20):
    """-> (train, test): SQuAD-style rows; the split is by context."""
    rng = random.Random(seed + 2)
    contexts = []
    for i in range(n_bios + n_towns):
        kind = "bio" if i < n_bios else "town"
        context, values, spans, table = _qa_context(rng, kind, i - n_bios)
        askable = [slot for slot in table if slot in spans]
        rows = []
        for q, slot in enumerate(rng.sample(askable, questions_per_context)):
            question = rng.choice(table[slot]).format(**values)
            start, text = spans[slot]
            assert context[start:start + len(text)] == text
            rows.append({"id": f"qa-{i:04d}-{q}", "context": context, "question": question,
                         "answers": {"text": [text], "answer_start": [start]}})
        contexts.append(rows)
    rng.shuffle(contexts)
    train = [r for rows in contexts[:-n_test_contexts] for r in rows]
    test = [r for rows in contexts[-n_test_contexts:] for r in rows]
    return train, test


# =============================================================================================

BUILDERS = {"sentiment": build_sentiment, "ner": build_ner, "qa": build_qa}


def write_datasets(folder=DATASETS_DIR):
    """(Re)write every <name>_<split>.jsonl under `folder`; returns the paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name, build in BUILDERS.items():
        for split, rows in zip(SPLITS, build()):
            path = os.path.join(folder, f"{name}_{split}.jsonl")
            write_jsonl(rows, path)
            paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write_datasets():
        print(f"wrote {p} ({len(read_jsonl(p))} examples)")
