"""VideoReTalking (OpenTalker/video-retalking): D-Net expression neutralisation, L-Net lip synthesis and E-Net
enhancement. ``networks`` holds the three networks with the releases' layouts and numerics; the registered model,
its dubbing hooks and training come in later steps (issue 28; docs/videoretalking.md)."""
