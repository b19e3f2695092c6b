"""Request frames: minimal pairs of text and picture requests, so the only thing that tells them apart is a word.

The fixed request cores in ``data.CORES`` differ in more than their request words: picture requests are short
("draw {p}", "sketch {p}"), text requests longer, and "show me" / "what does ... look like" only ever come with a
picture. A small model learns those shortcuts, and an unseen text request that happens to be short ("tell me
about {p}") is then read as a picture request. The frames here put the same sentence around either kind of
request word::

    give me the key data of {p}      ->  text          give me an illustration of {p}   ->  picture
    outline {p} for the website      ->  text          sketch {p} for the website       ->  picture
    describe {p} with its ratings    ->  text          describe {p} with a photo        ->  text + picture

so what decides the answer is whether a picture word is there, not the sentence around it.

The vocabulary keeps out every word that only the held-out or fresh phrasings use ("can", "would", "explain",
"summarize", ...): ``data.py`` checks it, and ``tests/test_training_data.py`` checks the built splits.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

# Noun phrases that ask for text, and the same with "its" for "... with its ratings".
TEXT_NOUNS = (
    "the specs",
    "the key specs",
    "the key data",
    "the data",
    "the ratings",
    "the facts",
    "the key figures",
    "a short text",
    "a description",
    "the details",
    "the numbers",
    "the technical data",
    "a product text",
    "a data sheet line",
    "some information",
    "the specifications",
    "the characteristics",
    "the performance data",
)
TEXT_NOUNS_ITS = (
    "its specs",
    "its key data",
    "its ratings",
    "its key figures",
    "its data",
    "its facts",
    "its details",
    "its numbers",
    "its technical data",
    "a short text",
    "a description",
    "its specifications",
)
PICTURE_NOUNS = (
    "a picture",
    "an image",
    "a drawing",
    "a sketch",
    "an illustration",
    "a photo",
    "a painting",
    "a rendering",
    "a quick sketch",
    "a product picture",
    "a product image",
    "a small drawing",
    "a clear picture",
    "the picture",
)
TEXT_VERBS = ("describe", "outline", "present", "introduce", "profile", "document", "detail", "characterize", "review")
PICTURE_VERBS = ("draw", "sketch", "paint", "render", "illustrate", "depict", "picture", "photograph")

# Sentences around a noun phrase {x} or a verb {v}; {m} is a modifier that fits either kind of request.
NOUN_FRAMES = (
    "give me {x} of {p}",
    "show me {x} of {p}",
    "I want {x} of {p}",
    "I need {x} of {p}",
    "send me {x} of {p}",
    "let me see {x} of {p}",
    "{x} of {p}",
    "prepare {x} of {p}",
    "provide {x} of {p}",
    "we need {x} of {p}",
    "do you have {x} of {p}",
    "share {x} of {p}",
    "find {x} of {p}",
    "post {x} of {p}",
    "bring me {x} for {p}",
    "{x} for {p}",
    "give me {x} for {p}",
    "is there {x} of {p}",
    "our shop needs {x} of {p}",
    "I want to see {x} of {p}",
)
VERB_FRAMES = (
    "{v} {p}{m}",
    "I want you to {v} {p}{m}",
    "we need you to {v} {p}{m}",
    "try to {v} {p}{m}",
    "go ahead and {v} {p}{m}",
    "just {v} {p}{m}",
    "help me {v} {p}{m}",
)
MODIFIERS = (
    "",
    " for me",
    " for a customer",
    " for the website",
    " right away",
    " today",
    " in detail",
    " for the shop page",
    " again",
    " for the sales team",
    " for us",
)
# Whole requests without a request noun or verb of their own.
TEXT_QUESTIONS = (
    "how does {p} perform",
    "how powerful is {p}",
    "how strong is {p}",
    "how big is {p}",
    "what is special about {p}",
    "what makes {p} good",
)
# Text requests with no request word at all: text is what a request gets unless it names a picture. Without
# them every training text request has a text word (specs, describe ...), and the model is free to learn "no
# text word -> picture" instead of "picture word -> picture" (run 12 in docs/training.md did).
NEUTRAL_REQUESTS = (
    "what about {p}",
    "how about {p}",
    "what is {p}",
    "what is {p} for",
    "who makes {p}",
    "is {p} any good",
    "is {p} reliable",
    "anything on {p}",
    "I have a question on {p}",
    "help me with {p}",
    "our customers ask about {p}",
    "{p}",
    "{p}, what is it",
    "we sell {p}",
    "next up: {p}",
    "I want to know more about {p}",
    "what is new in {p}",
    "why choose {p}",
    "is {p} a good choice",
    "any news on {p}",
)
PICTURE_QUESTIONS = (
    "how does {p} look",
    "what does {p} look like",
    "let me see what {p} looks like",
    "show me how {p} looks",
)
JOINS = (" and ", ", and ", " plus ", " and also ", ", then ", " together with ")


def _nouns(nouns: tuple[str, ...]) -> list[str]:
    return [frame.replace("{x}", x) for frame in NOUN_FRAMES for x in nouns]


def _verbs(verbs: tuple[str, ...]) -> list[str]:
    return [frame.replace("{v}", v).replace("{m}", m) for frame in VERB_FRAMES for v in verbs for m in MODIFIERS]


def _text_requests() -> list[str]:
    neutral = [request + m for request in NEUTRAL_REQUESTS for m in MODIFIERS]
    return _nouns(TEXT_NOUNS) + _verbs(TEXT_VERBS) + list(TEXT_QUESTIONS) + neutral


def _picture_requests() -> list[str]:
    return _nouns(PICTURE_NOUNS) + _verbs(PICTURE_VERBS) + list(PICTURE_QUESTIONS)


def _both_requests(rng: random.Random, count: int) -> list[str]:
    """Text + picture requests: "... with a photo", "the specs and a picture of {p}", two joined requests."""
    out: set[str] = set()
    text, picture = _text_requests(), _picture_requests()
    while len(out) < count:
        kind = rng.randrange(5)
        if kind == 0:  # a text request with a picture noun after it
            out.add(f"{rng.choice(text)} with {rng.choice(PICTURE_NOUNS)}")
        elif kind == 1:  # a picture request with a text noun after it
            out.add(f"{rng.choice(picture)} with {rng.choice(TEXT_NOUNS_ITS)}")
        elif kind == 2:  # two noun phrases, either order
            a, b = rng.choice(TEXT_NOUNS), rng.choice(PICTURE_NOUNS)
            pair = f"{a} and {b}" if rng.random() < 0.5 else f"{b} and {a}"
            out.add(rng.choice(NOUN_FRAMES).replace("{x}", pair))
        elif kind == 3:  # two verbs, either order
            a, b = rng.choice(TEXT_VERBS), rng.choice(PICTURE_VERBS)
            pair = f"{a} and {b}" if rng.random() < 0.5 else f"{b} and {a}"
            out.add(rng.choice(VERB_FRAMES).replace("{v}", pair).replace("{m}", rng.choice(MODIFIERS)))
        else:  # two whole requests, the second naming the product as "it"
            a, b = rng.choice(text), rng.choice(picture)
            first, second = (a, b) if rng.random() < 0.5 else (b, a)
            out.add(first + rng.choice(JOINS) + second.replace("{p}", "it"))
    return sorted(out)


def _text_with_text(rng: random.Random, count: int) -> list[str]:
    """The text-only twins of kind 0: "describe {p} with its ratings" asks for text alone."""
    text = _text_requests()
    return sorted({f"{rng.choice(text)} with {rng.choice(TEXT_NOUNS_ITS)}" for _ in range(count)})


def frame_cores(task: str, count: int, seed: int = 0) -> list[str]:
    """``count`` request cores for ``task`` (t2t, t2i, t2ti) from the frames, drawn once with ``seed``."""
    rng = random.Random(f"{seed}/{task}")
    if task == "t2t":
        pool = sorted(set(_text_requests() + _text_with_text(rng, count // 4)))
    elif task == "t2i":
        pool = sorted(set(_picture_requests()))
    elif task == "t2ti":
        pool = _both_requests(rng, 2 * count)
    else:
        raise ValueError(f"no request frames for {task!r}")
    return rng.sample(pool, min(count, len(pool)))


def words(texts: Iterable[str]) -> set[str]:
    """The lowercase words of request texts, placeholders ({p}, {x}, {v}, {m}, {end}) and punctuation removed."""
    out = set()
    for text in texts:
        for placeholder in ("{p}", "{x}", "{v}", "{m}", "{end}"):
            text = text.replace(placeholder, " ")
        out.update(word.strip(".,?!:").lower() for word in text.split())
    return out - {""}


def frame_words() -> set[str]:
    """Every word the frames can put in a prompt."""
    return words(
        TEXT_NOUNS + TEXT_NOUNS_ITS + PICTURE_NOUNS + TEXT_VERBS + PICTURE_VERBS + NOUN_FRAMES + VERB_FRAMES
        + MODIFIERS + TEXT_QUESTIONS + NEUTRAL_REQUESTS + PICTURE_QUESTIONS + JOINS + ("with", "it")
    )
