"""DINet's official state-dict layout per submodule, from ``fixtures/dinet_keys.txt`` (the listing the
reference notes built from the upstream classes): what ``tests/test_models.py`` checks each release against."""
from __future__ import annotations

from pathlib import Path

from fixture_tools import parse_key_listing

KEYS_FILE = Path(__file__).resolve().parent / "fixtures" / "dinet_keys.txt"
# our submodule -> the section heading of dinet_keys.txt that lists it
SECTIONS = {"networks.generator": "## DINet(3,15,29)", "networks.syncnet": "## SyncNet(15,29,128)",
            "networks.frame_discriminator": "## Discriminator net_dI",
            "networks.clip_discriminator": "## Discriminator net_dV"}


def official_layout() -> dict[str, list[tuple[str, tuple[int, ...], str]]]:
    """``{submodule: [(key, shape, dtype), ...]}`` of the released networks."""
    sections = parse_key_listing(KEYS_FILE.read_text())
    return {module: sections[next(h for h in sections if h.startswith(heading))]
            for module, heading in SECTIONS.items()}
