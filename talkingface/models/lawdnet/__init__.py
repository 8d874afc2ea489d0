"""LawDNet (iPaw-AI-LAB/LawDNet_2024), DINet's successor: local affine warping, audio/video cross-attention,
no BatchNorm, mouth 288. In progress (issue 13): the networks; the registered model comes with its
``configs/model/lawdnet.yaml``, which is what makes this folder a plugin."""
