from pathlib import Path

import pytest

from talkingface.errors import CheckpointError
from talkingface.weights import KnownWeights, sha256_of


def test_known_weights_are_checked_by_hash(tmp_path: Path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"released weights")
    digest = sha256_of(path)
    good = KnownWeights("model.bin", "https://example.org/model.bin", "a test", digest[:8], digest[-4:])
    assert good.verify(path) == path
    bad = KnownWeights("model.bin", "https://example.org/model.bin", "a test", "00000000")
    with pytest.raises(CheckpointError, match=f"SHA-256 {digest} does not match 00000000"):
        bad.verify(path)
    assert good.missing_reason(path) is None
    assert good.missing_reason(tmp_path / "absent.bin") == (
        f"model.bin not found at {tmp_path / 'absent.bin'}; see checkpoints/README.md")


def test_checkpoints_readme_lists_every_declared_weight_file():
    from talkingface.registry import discover_plugins
    from talkingface.weights import weights_catalogue, weights_table

    discover_plugins()
    readme = (Path(__file__).resolve().parents[1] / "checkpoints" / "README.md").read_text()
    start, end = readme.index("-->\n", readme.index("<!-- weights:begin")) + 4, readme.index("\n<!-- weights:end -->")
    declared = weights_table(weights_catalogue())
    assert readme[start:end] == declared, "regenerate with `talkingface list --weights` (checkpoints/README.md)"
    names = [w.filename for w in weights_catalogue()]
    assert {"clip_training_DINet_256mouth.pth", "syncnet_256mouth.pth", "sfd_face.pth"} <= set(names)
    assert len(names) == len(set(names))


def test_every_declared_weight_file_states_its_licence():
    """Each declaration names the licence its source states, or says ``not stated`` (never left empty)."""
    from talkingface.registry import discover_plugins
    from talkingface.weights import weights_catalogue, weights_table

    discover_plugins()
    unstated = [w.filename for w in weights_catalogue() if not w.licence.strip()]
    assert not unstated, f"declare a licence (or 'not stated') for {unstated}"
    assert "| licence (as its source states it) |" in weights_table(weights_catalogue())
