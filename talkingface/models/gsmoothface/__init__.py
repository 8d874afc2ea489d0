"""GSmoothFace (Zhang et al., arXiv 2312.07385): networks only so far (issue 30); the model is not registered yet."""
