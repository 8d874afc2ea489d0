"""GSmoothFace's weight files (declared as data: ``talkingface list --weights``, checkpoints/README.md).

- A2EP: the authors give trained models "on request" (project page); their demo loads ``epoch=19-step=10399.ckpt``,
  a PyTorch Lightning 1.5.10 checkpoint. No SHA-256 is published.
- TAFT: a trainer checkpoint ``epoch_XXXXX_iteration_XXXXXXXXX_checkpoint.pt`` (``net_G``, ``net_G_ema``, ...) from
  the GSmoothFace_TAFT repository, which is **CC BY-NC 4.0** (non-commercial): so are its weights.
- wav2vec 2.0: ``facebook/wav2vec2-base-960h`` (Apache-2.0), A2EP's audio encoder initialisation before training;
  its ``model.safetensors`` (a ``Wav2Vec2ForCTC``: keys ``wav2vec2.*`` and the unused ``lm_head``) or
  ``pytorch_model.bin``, renamed. Never fetched from a hub.

``RELEASES`` (the generic loading tests build the model at the release's size for each) holds TAFT; the A2EP and
wav2vec 2.0 files (108 M and 94 M parameters) are declared and loaded the same way and tested at a small size in
``tests/models/gsmoothface/test_gsmoothface_convert.py``.
"""
from __future__ import annotations

from ...weights import KnownWeights

GSMOOTHFACE_LICENCE = "MIT (zhanghm1995/GSmoothFace); the weights are given on request, under the authors' terms"
TAFT_LICENCE = ("CC BY-NC 4.0 (zhanghm1995/GSmoothFace_TAFT LICENSE.md): non-commercial use only, attribution "
                "required; derived from PIRender")

A2EP_CHECKPOINT = KnownWeights(
    "epoch=19-step=10399.ckpt",
    "on request from the authors (GSmoothFace project page, https://zhanghm1995.github.io/GSmoothFace/; the demo's "
    "config/demo.yaml loads this name)",
    "model `gsmoothface` (A2EP: PyTorch Lightning checkpoint of Face3DMMOneHotFormerModule, `model.` stripped; "
    "`hyper_parameters` read without unpickling)", fills=("a2ep",), licence=GSMOOTHFACE_LICENCE)
TAFT_CHECKPOINT = KnownWeights(
    "taft_checkpoint.pt",
    "GSmoothFace_TAFT's trainer output `epoch_XXXXX_iteration_XXXXXXXXX_checkpoint.pt` (pretrained model linked from "
    "https://github.com/zhanghm1995/GSmoothFace_TAFT), renamed",
    "model `gsmoothface` (TAFT: `net_G_ema` by default, `net_G` with gsmoothface.taft.weights: net_G; CC BY-NC 4.0, "
    "non-commercial)", fills=("taft", "taft_train"), licence=TAFT_LICENCE)
WAV2VEC2_BASE_960H = KnownWeights(
    "wav2vec2-base-960h.safetensors",
    "https://huggingface.co/facebook/wav2vec2-base-960h (model.safetensors, renamed; pytorch_model.bin also loads)",
    "model `gsmoothface` (A2EP's wav2vec 2.0 audio encoder before training: `wav2vec2.` stripped, `lm_head` "
    "dropped)", fills=("a2ep.audio_encoder",), licence="Apache-2.0 (facebook/wav2vec2-base-960h model card)")

RELEASES = (TAFT_CHECKPOINT,)
OTHER_WEIGHTS = (A2EP_CHECKPOINT, WAV2VEC2_BASE_960H)
