"""The config snippets of README.md's "Using DaoHub as a registry mirror" section, as the tests use them.

Every fenced block of that section is one of the kinds below, recognised by its language and
a line it must contain; the tests run each kind against real clients, with the section's
placeholder address of DaoHub (`hub.example:5000`) replaced by the address of the DaoHub under
test. A block of no known kind fails `blocks()`: a snippet nobody tests cannot be added.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Using DaoHub as a registry mirror"
PLACEHOLDER = "hub.example:5000"

# kind -> (fence language, text one of its lines must contain)
KINDS = {
    "daohub_config": ("yaml", "proxy:"),
    "daemon_json": ("json", '"registry-mirrors"'),
    "hosts_toml": ("toml", '[host."http://hub.example:5000"]'),
    "containerd_config": ("toml", "config_path = "),
    "registries_conf": ("toml", "[[registry.mirror]]"),
    "kind_cluster": ("yaml", "kind: Cluster"),
    "k3s_registries": ("yaml", "mirrors:"),
    "skopeo": ("sh", "skopeo copy "),
}


@dataclass(frozen=True)
class Block:
    kind: str
    text: str

    def for_hub(self, host: str) -> str:
        """The snippet with DaoHub's placeholder address replaced by `host` (HOST:PORT)."""
        return self.text.replace(PLACEHOLDER, host)


def section_text(readme: Path = README) -> str:
    text = readme.read_text()
    start = text.find("\n" + SECTION + "\n")
    assert start >= 0, f"{readme} has no section {SECTION!r}"
    end = text.find("\n## ", start + len(SECTION) + 2)
    return text[start:end if end >= 0 else len(text)]


def _fenced(text: str) -> list[tuple[str, str]]:
    # Blocks may be indented under a list item; the fence's indent is stripped from each line.
    found = []
    for m in re.finditer(r"^( *)```(\w*)\n(.*?)^\1```$", text, re.DOTALL | re.MULTILINE):
        indent = len(m.group(1))
        body = "".join(line[indent:] if line[:indent] == " " * indent else line.lstrip(" ")
                       for line in m.group(3).splitlines(keepends=True))
        found.append((m.group(2), body))
    return found


def blocks(readme: Path = README) -> dict[str, Block]:
    """kind -> block; fails on a block of no known kind, or two of one kind."""
    found: dict[str, Block] = {}
    for lang, body in _fenced(section_text(readme)):
        kinds = [k for k, (want_lang, marker) in KINDS.items()
                 if lang == want_lang and any(marker in line for line in body.splitlines())]
        assert len(kinds) == 1, f"README block ({lang}) matches {kinds or 'no kind'} of {list(KINDS)}:\n{body}"
        assert kinds[0] not in found, f"two README blocks of kind {kinds[0]}"
        found[kinds[0]] = Block(kinds[0], body)
    missing = set(KINDS) - set(found)
    assert not missing, f"README section {SECTION!r} lacks blocks of kind {sorted(missing)}"
    return found
