"""Commands of a doc's ```sh blocks, for the tests that run a doc's walk as written."""

from __future__ import annotations

import re
import textwrap

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
