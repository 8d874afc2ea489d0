"""DINet (Zhang et al., AAAI 2023): deformation inpainting network for few-shot face dubbing."""
