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
