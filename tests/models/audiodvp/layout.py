"""AudioDVP's official state-dict layouts (``fixtures/audiodvp_keys.txt``: the listing ``fixtures/make_fixture.py``
writes from the official classes of xinwen-cs/AudioDVP at 54aafc9, built at the release's configurations, one
``key<TAB>shape<TAB>dtype`` per line under a ``## <class(arguments)>: ...`` heading)."""
from __future__ import annotations

import re
from pathlib import Path

from fixture_tools import parse_key_listing

KEYS_FILE = Path(__file__).resolve().parent / "fixtures" / "audiodvp_keys.txt"
# our submodule -> the heading (its start) of the official network that the release file holds
SECTIONS = {"audio_encoder": "## AT_net()", "audio2expression": "## AudioExpressionModule(Nw=7)",
            "renderer": "## UnetGenerator(21,3,8,64,", "discriminator": "## NLayerDiscriminator(24,64,3,"}
ATNET_ENCODER = ("audio_eocder.", "audio_eocder_fc.")  # the part of AT_net that runs (and that we build)


def network_layout(submodule: str) -> list[tuple[str, tuple[int, ...], str]]:
    """The whole official network behind ``submodule``, as its file holds it (for ``audio_encoder``: all of
    ``AT_net``, the unused ``lmark_encoder``, ``lstm`` and ``lstm_fc`` included, without DataParallel's ``module.``)."""
    sections = parse_key_listing(KEYS_FILE.read_text())
    return sections[next(h for h in sections if h.startswith(SECTIONS[submodule]))]


def official_layout() -> dict[str, list[tuple[str, tuple[int, ...], str]]]:
    """``{submodule: [(key, shape, dtype), ...]}`` of the released networks by the model's submodule names; the
    audio encoder is ``AT_net``'s encoder keys only."""
    layout = {name: network_layout(name) for name in SECTIONS}
    layout["audio_encoder"] = [row for row in layout["audio_encoder"] if row[0].startswith(ATNET_ENCODER)]
    return layout
