"""The README's fresh-machine commands, read from its "Quick start" section: the first two ```sh blocks there.

.ci/run runs exactly these, so the README and CI cannot drift apart (tests/test_ci.py checks both sides).
Standard library only: it runs before the project's virtual environment exists.

  python3 .ci/readme_commands.py 1     # prints the first command
"""
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent/"README.md"


def readme_commands(text: str) -> list[str]:
    "The one-line commands of the first two ```sh blocks under '## Quick start'; a ValueError saying what is wrong."
    match = re.search(r"^## Quick start\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    if not match:
        raise ValueError("README.md: no '## Quick start' section")
    blocks = re.findall(r"^```sh\n(.*?)^```", match.group(1), flags=re.M | re.S)
    if len(blocks) < 2:
        raise ValueError(f"README.md: the Quick start section has {len(blocks)} sh block(s), expected 2")
    commands = []
    for n, block in enumerate(blocks[:2], 1):
        lines = [line for line in block.splitlines() if line.strip()]
        if len(lines) != 1:
            raise ValueError(f"README.md: Quick start sh block {n} holds {len(lines)} lines, expected one command")
        commands.append(lines[0].strip())
    return commands


if __name__ == "__main__":
    which = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    try:
        commands = readme_commands(README.read_text(encoding="utf-8"))
    except ValueError as e:
        sys.exit(f"readme_commands: {e}")
    print(commands[which - 1] if which else "\n".join(commands))
