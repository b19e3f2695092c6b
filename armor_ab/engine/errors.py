"""Engine errors (no heavy imports: the CLI catches these without loading torch)."""

from __future__ import annotations

from pathlib import Path


class EngineError(RuntimeError):
    """A missing, truncated, corrupt or mismatched engine file; the message names the file."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class BackendUnavailable(RuntimeError):
    """The backend cannot run on this machine (no CUDA, no tensorrt package)."""


class UnsupportedModel(ValueError):
    """A model the engine's graphs cannot reproduce (sliding-window attention, length-dependent RoPE, another
    LM family); raised before anything is exported. A ``ValueError``: the CLI reports it as bad input."""
