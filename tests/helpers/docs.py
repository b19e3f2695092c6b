"""Commands of a doc's ```sh blocks, for the tests that run a doc's walk as written."""

from __future__ import annotations

import re
import textwrap

FILE_BLOCK = re.compile(r"^File `([^`]+)`:\s*\n\s*\n?```(\w+)\n(.*?)^```", re.M | re.S)
SH_BLOCK = re.compile(r"^([ \t]*)```sh\n(.*?)^\1```", re.M | re.S)


def sh_commands(text: str, doc: str) -> list[str]:
    """Every command of the doc's ```sh blocks, in order (continued lines joined, comments left out)."""
    commands: list[str] = []
    for _indent, body in SH_BLOCK.findall(text):
        pending = ""
        for line in textwrap.dedent(body).splitlines():
            line = line.strip()
            if not pending and (not line or line.startswith("#")):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            commands.append(pending + line)
            pending = ""
        assert not pending, f"a ```sh block of {doc} ends inside a continued line: {pending!r}"
    assert commands, f"{doc} has no ```sh commands"
    return commands


def doc_files(text: str, doc: str) -> dict[str, str]:
    """The example files a doc shows (a line File `NAME`: before a fenced block): name -> content."""
    files = {name: body for name, _, body in FILE_BLOCK.findall(text)}
    assert files, f"{doc} shows no example files (a line File `NAME`: before a fenced block)"
    return files
