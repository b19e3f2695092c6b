"""What a check says about a page, and what the page's checks say together: stored with the page
(``content.checks`` as JSON, ``content.verdict``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["pass", "warn", "fail"]
Verdict = Literal["pass", "warn", "fail"]
STATUSES: tuple[str, ...] = ("pass", "warn", "fail")


@dataclass(frozen=True)
class Evidence:
    """Why a check did not pass: the offending span of the page's text (``start``/``end`` into
    ``Page.text``), or the picture (``image``: its index on the page), and a score where there is one."""

    text: str
    start: int | None = None
    end: int | None = None
    image: int | None = None
    score: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evidence:
        return cls(**{k: data.get(k) for k in ("text", "start", "end", "image", "score")})


@dataclass(frozen=True)
class CheckResult:
    """One check's answer: ``status``, a reason a reviewer reads, and the evidence.

    ``action`` is the policy's for this check (``block`` or ``warn``), filled in by the pipeline:
    a ``fail`` of a blocking check fails the page, any other non-pass only warns."""

    check: str
    status: Status
    reason: str
    evidence: tuple[Evidence, ...] = ()
    action: str = "block"

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "status": self.status, "action": self.action, "reason": self.reason,
                "evidence": [e.to_json() for e in self.evidence]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckResult:
        return cls(data["check"], data["status"], data["reason"],
                   tuple(Evidence.from_json(e) for e in data.get("evidence", ())), data.get("action", "block"))

    @property
    def blocks(self) -> bool:
        return self.status == "fail" and self.action == "block"


def passed(check: str, reason: str = "ok") -> CheckResult:
    return CheckResult(check, "pass", reason)


@dataclass(frozen=True)
class PageChecks:
    """Every check's result for one page, and what made them (the policy's hash, the version)."""

    results: tuple[CheckResult, ...]
    checked_at: str  # ISO 8601, UTC
    policy_hash: str  # SHA-256 of the content_checks policy the page was checked under
    made_by: dict[str, str] = field(default_factory=dict)  # armor-ab version, model name

    @property
    def verdict(self) -> Verdict:
        """``fail`` when a blocking check failed (never served, never approved), ``warn`` when any
        other check did not pass (a human may approve), else ``pass``."""
        if any(r.blocks for r in self.results):
            return "fail"
        if any(r.status != "pass" for r in self.results):
            return "warn"
        return "pass"

    def failing(self) -> list[str]:
        """The checks that did not pass, in order."""
        return [r.check for r in self.results if r.status != "pass"]

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "checked_at": self.checked_at, "policy_hash": self.policy_hash,
                "made_by": self.made_by, "results": [r.to_json() for r in self.results]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PageChecks:
        return cls(tuple(CheckResult.from_json(r) for r in data["results"]), data["checked_at"],
                   data["policy_hash"], dict(data.get("made_by", {})))
