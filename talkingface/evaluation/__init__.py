"""Metrics, the evaluator that streams (generated, reference) videos through them, and reports."""
from .evaluator import EvaluationResult, Evaluator
from .metric import Metric, VideoSample
from .metrics import psnr

__all__ = ["EvaluationResult", "Evaluator", "Metric", "VideoSample", "psnr"]
