"""terms: words a page must never say, and words it must say.

Legal and brand rules are lists a product manager maintains ("no 'guaranteed'", "always name the
warranty"), so they live in the experiment's policy, not in code.

* ``blocked``: Python regular expressions, searched anywhere in the text, case-insensitively unless
  ``case_sensitive`` (``re.IGNORECASE``, Unicode case folding). They are taken as written: write
  ``\\b`` for word boundaries yourself ("free" also blocks "carefree"; ``\\bfree\\b`` does not). Every
  match is evidence; empty matches (a pattern such as ``x*``) are ignored.
* ``required``: plain strings (not patterns), found as whole words: no letter or digit immediately
  before or after (punctuation, spaces, underscores and the ends of the text are boundaries), so
  "IE3" is found in "an IE3 motor" and in "(IE3)" but not in "IE30". Case-insensitive unless
  ``case_sensitive``; a run of whitespace in a term matches any run of whitespace on the page.
"""

from __future__ import annotations

import re

from armor_ab.experiments.content_checks import TermsPolicy
from armor_ab.guardrails.check import Check
from armor_ab.guardrails.context import CheckContext
from armor_ab.guardrails.page import Page
from armor_ab.guardrails.result import CheckResult, Evidence, passed

NAME = "terms"


def _flags(policy: TermsPolicy) -> int:
    return 0 if policy.case_sensitive else re.IGNORECASE


def required_pattern(term: str, case_sensitive: bool = False) -> re.Pattern[str]:
    """``term`` as a whole word: no letter or digit on either side; whitespace runs match any whitespace."""
    body = r"\s+".join(re.escape(w) for w in term.split())
    return re.compile(rf"(?<![^\W_]){body}(?![^\W_])", 0 if case_sensitive else re.IGNORECASE)


def blocked_matches(text: str, policy: TermsPolicy) -> list[Evidence]:
    """Every non-empty match of every blocked pattern, in pattern order."""
    out = []
    for pattern in policy.blocked:
        for m in re.finditer(pattern, text, _flags(policy)):
            if m.end() > m.start():
                out.append(Evidence(m.group(0), m.start(), m.end()))
    return out


def run(page: Page, policy: TermsPolicy, ctx: CheckContext) -> CheckResult:
    blocked = blocked_matches(page.text, policy)
    missing = [t for t in policy.required if not required_pattern(t, policy.case_sensitive).search(page.text)]
    if not blocked and not missing:
        return passed(NAME, "no blocked term, every required term present")
    reasons = []
    if blocked:
        found = ", ".join(dict.fromkeys(repr(e.text) for e in blocked))
        reasons.append(f"blocked term{'s' if len(blocked) > 1 else ''} {found}")
    if missing:
        reasons.append("missing required term" + ("s " if len(missing) > 1 else " ") + ", ".join(map(repr, missing)))
    return CheckResult(NAME, "fail", "; ".join(reasons), tuple(blocked) + tuple(Evidence(t) for t in missing))


CHECK = Check(NAME, run, "no blocked term (regular expressions) and every required term (whole words) on the page")
