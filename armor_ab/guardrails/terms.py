"""Placeholder (a minimal blocked-pattern check until the full ``terms`` check lands): a page fails
when its text matches a ``blocked`` regular expression (case-insensitively unless ``case_sensitive``)."""

from __future__ import annotations

import re

from armor_ab.guardrails.check import Check
from armor_ab.guardrails.result import CheckResult, Evidence, passed


def run(page, policy, ctx) -> CheckResult:
    flags = 0 if policy.case_sensitive else re.IGNORECASE
    for pattern in policy.blocked:
        found = re.search(pattern, page.text, flags)
        if found:
            return CheckResult("terms", "fail", f"the text has a blocked term ({pattern!r})",
                               (Evidence(found.group(0), found.start(), found.end()),))
    return passed("terms")


CHECK = Check("terms", run, "no blocked term")
