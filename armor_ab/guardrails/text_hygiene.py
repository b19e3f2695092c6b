"""text_hygiene: the text looks like finished copy, not like a model failing.

A small generator fails in recognisable ways: it stops too early or never stops (length bounds), it
prints its own control tokens (``<eos>``, ``<imgcode_12>``, ``<|im_end|>``), it loops ("the pump the
pump the pump"), or it drifts into another language or script halfway through. Each is checked:

* length: the stripped text has ``min_chars``..``max_chars`` characters (``min_chars`` does not apply
  when the page's template asks for no text);
* leaked tokens: any of the tokenizer's control tokens (``CheckContext.special_tokens``) or of the
  generic ``TOKEN_PATTERNS``, anywhere;
* loops: the same run of 1 to ``MAX_NGRAM`` words (case-insensitive, punctuation ignored) repeated
  ``max_repeats`` times or more in a row, or the same sentence ``max_repeats`` times or more anywhere;
* one language (``one_language``): sentences of at least ``MIN_LANGUAGE_WORDS`` words (words with a
  digit, such as "5.5" or "P-01", do not count and are not classified) are classified with py3langid;
  two sentences classified, each with probability >= ``LANGUAGE_CONFIDENCE``, as different languages
  fail, as do letters from more than one script (Latin, Cyrillic, Greek, CJK, ...). Short, technical
  English mostly has no sentence long enough to classify, and its classifications are rarely that
  confident, which keeps false alarms low; Greek letters used as unit or symbol (µm, kΩ, Δp) do not
  count as Greek: only words of two or more Greek letters do. Hiragana, katakana, Han and Hangul
  count as one script (CJK), since Japanese mixes them.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from functools import cache

from armor_ab.experiments.content_checks import TextHygienePolicy
from armor_ab.guardrails.check import Check
from armor_ab.guardrails.context import CheckContext
from armor_ab.guardrails.page import Page
from armor_ab.guardrails.result import CheckResult, Evidence, passed

NAME = "text_hygiene"
TOKEN_PATTERNS = (r"<imgcode_\d+>", r"<\|[^|>]{1,40}\|>", r"<img>", r"</img>", r"<IMG_CONTEXT>", r"<imgbos>",
                  r"<imgend>", r"<imgpad>", r"<bos>", r"<eos>", r"<pad>")
MAX_NGRAM = 8
MIN_LANGUAGE_WORDS = 6
LANGUAGE_CONFIDENCE = 0.9
MAX_EVIDENCE = 20  # per problem
CJK = frozenset({"CJK", "HIRAGANA", "KATAKANA", "HANGUL"})
SCRIPTS = frozenset({"LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "HEBREW", "ARABIC", "SYRIAC", "THAANA", "DEVANAGARI",
                     "BENGALI", "GURMUKHI", "GUJARATI", "ORIYA", "TAMIL", "TELUGU", "KANNADA", "MALAYALAM", "SINHALA",
                     "THAI", "LAO", "TIBETAN", "MYANMAR", "GEORGIAN", "ETHIOPIC", "KHMER", "MONGOLIAN", *CJK})
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
# A sentence ends at . ! ? followed by a space or the end ("5.5 kW" does not end one), or at a line break.
_SENTENCE = re.compile(r"(?:[^.!?\n]|[.!?](?![\s.!?]|$))+[.!?]*")


def _problem(reason: str, evidence: list[Evidence]) -> tuple[str, list[Evidence]]:
    return reason, evidence[:MAX_EVIDENCE]


def _length(page: Page, policy: TextHygienePolicy) -> list[tuple[str, list[Evidence]]]:
    stripped = page.text.strip()
    n = len(stripped)
    start = len(page.text) - len(page.text.lstrip())
    if n > policy.max_chars:
        cut = start + policy.max_chars  # the evidence marks where the overflow starts (its first 80 characters)
        end = min(start + n, cut + 80)
        return [_problem(f"the text is {n} characters, more than {policy.max_chars}",
                         [Evidence(page.text[cut:end], cut, end)])]
    if n < policy.min_chars and page.expects.text:
        return [_problem(f"the text is {n} characters, fewer than {policy.min_chars}",
                         [Evidence(stripped, start, start + n)])]
    return []


@cache
def _token_regex(specials: tuple[str, ...]) -> re.Pattern[str]:
    # A tokenizer extended for ARMOR has thousands of <imgcode_i> and <|armor_unused_i|>: the generic
    # patterns already cover them, and an alternation of thousands of literals is slow to search.
    generic = [re.compile(p) for p in TOKEN_PATTERNS]
    own = {t for t in specials if t.strip() and not any(g.fullmatch(t) for g in generic)}
    literal = [re.escape(t) for t in sorted(own, key=len, reverse=True)]
    return re.compile("|".join(literal + list(TOKEN_PATTERNS)))


def leaked_tokens(text: str, specials: tuple[str, ...] = ()) -> list[Evidence]:
    """Every control token in ``text``: the tokenizer's own and the generic ``TOKEN_PATTERNS``."""
    return [Evidence(m.group(0), m.start(), m.end()) for m in _token_regex(tuple(specials)).finditer(text)]


def _tokens(page: Page, ctx: CheckContext) -> list[tuple[str, list[Evidence]]]:
    found = leaked_tokens(page.text, ctx.special_tokens)
    if not found:
        return []
    names = ", ".join(dict.fromkeys(e.text for e in found[:5]))
    return [_problem(f"leaked special token{'s' if len(found) > 1 else ''} {names}", found)]


def word_loops(text: str, max_repeats: int) -> list[tuple[int, int]]:
    """Spans (start, end) of runs of 1..``MAX_NGRAM`` words repeated ``max_repeats`` times or more in a row."""
    words = list(_WORD.finditer(text))
    low = [w.group(0).casefold() for w in words]
    spans: list[tuple[int, int]] = []
    for n in range(1, MAX_NGRAM + 1):
        i = 0
        while i + n < len(low):
            j = i
            while j + n < len(low) and low[j] == low[j + n]:
                j += 1
            run = j - i  # words equal to the word n later, from i on
            if run >= (max_repeats - 1) * n:
                spans.append((words[i].start(), words[j + n - 1].end()))
                i = j + n
            else:
                i = j + 1 if j > i else i + 1
    spans.sort()
    merged: list[tuple[int, int]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence: text up to . ! ? or a line break, surrounding spaces trimmed."""
    out = []
    for m in _SENTENCE.finditer(text):
        s, e = m.span()
        chunk = m.group(0)
        s += len(chunk) - len(chunk.lstrip())
        e -= len(chunk) - len(chunk.rstrip())
        if e > s:
            out.append((s, e))
    return out


def _loops(page: Page, policy: TextHygienePolicy) -> list[tuple[str, list[Evidence]]]:
    text, problems = page.text, []
    loops = word_loops(text, policy.max_repeats)
    if loops:
        problems.append(_problem(f"repetition loop: words repeated {policy.max_repeats} or more times in a row",
                                 [Evidence(text[s:e], s, e) for s, e in loops]))
    by_sentence: dict[tuple[str, ...], list[tuple[int, int]]] = {}
    for s, e in sentences(text):
        key = tuple(w.casefold() for w in _WORD.findall(text[s:e]))
        if key:
            by_sentence.setdefault(key, []).append((s, e))
    for spans in by_sentence.values():
        if len(spans) >= policy.max_repeats:
            first = text[spans[0][0]:spans[0][1]]
            problems.append(_problem(f"the sentence {first[:60]!r} appears {len(spans)} times",
                                     [Evidence(text[s:e], s, e) for s, e in spans]))
    return problems


def script_of(ch: str) -> str | None:
    """The script of a letter ("LATIN", "CYRILLIC", "CJK", ...), None for anything else."""
    try:
        script = unicodedata.name(ch).split()[0]
    except ValueError:
        return None
    script = "CJK" if script in CJK else script
    return script if script in SCRIPTS else None


def _scripts(text: str) -> list[tuple[str, list[Evidence]]]:
    letters: Counter[str] = Counter()
    where: dict[str, list[Evidence]] = {}
    for m in _WORD.finditer(text):
        per_word = Counter(s for s in map(script_of, m.group(0)) if s)
        if per_word.get("GREEK", 0) < 2:  # µm, kΩ, Δp: a Greek symbol, not Greek
            per_word.pop("GREEK", None)
        for script, count in per_word.items():
            letters[script] += count
            where.setdefault(script, []).append(Evidence(m.group(0), m.start(), m.end()))
    if len(letters) < 2:
        return []
    main = letters.most_common(1)[0][0]
    others = [s for s in letters if s != main]
    names = " and ".join(s.title() for s in [main, *others])
    return [_problem(f"letters from more than one script: {names}", [e for s in others for e in where[s]])]


@cache
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def sentence_languages(text: str) -> list[tuple[int, int, str, float]]:
    """(start, end, language, probability) of each sentence long enough to classify."""
    out = []
    for s, e in sentences(text):
        words = [w for w in _WORD.findall(text[s:e]) if not any(c.isdigit() for c in w)]
        if len(words) >= MIN_LANGUAGE_WORDS:
            lang, prob = _identifier().classify(" ".join(words))
            out.append((s, e, lang, prob))
    return out


def _languages(text: str) -> list[tuple[str, list[Evidence]]]:
    confident = [x for x in sentence_languages(text) if x[3] >= LANGUAGE_CONFIDENCE]
    weight: Counter[str] = Counter()
    for s, e, lang, _ in confident:
        weight[lang] += e - s
    if len(weight) < 2:
        return []
    main = weight.most_common(1)[0][0]
    others = sorted(set(weight) - {main})
    return [_problem(f"more than one language: mostly {main}, but also {', '.join(others)}",
                     [Evidence(text[s:e], s, e, score=round(p, 3)) for s, e, lang, p in confident if lang != main])]


def run(page: Page, policy: TextHygienePolicy, ctx: CheckContext) -> CheckResult:
    problems = _length(page, policy) + _tokens(page, ctx) + _loops(page, policy)
    if policy.one_language:
        problems += _scripts(page.text) or _languages(page.text)
    if not problems:
        return passed(NAME, "length, tokens, repetition and language are fine")
    return CheckResult(NAME, "fail", "; ".join(r for r, _ in problems), tuple(e for _, ev in problems for e in ev))


CHECK = Check(NAME, run, "text length within bounds, no leaked special tokens, no repetition loops, one language")
