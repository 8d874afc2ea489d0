"""Metrics, the evaluator that streams (generated, reference) videos through them, and reports."""
from .evaluator import EvaluationResult, Evaluator
from .metric import Metric, VideoSample
from .cpbd import cpbd
from .fid import FIDMetric, InceptionFeatures, frechet_distance
from .lmd import lmd
from .mouth_sync import MouthSyncMetric
from .lpips import LPIPS, LPIPSMetric
from .metrics import psnr
from .ssim import ssim
from .syncnet import SyncNetScorer
from .syncnet.metric import LSEMetric

__all__ = ["EvaluationResult", "Evaluator", "FIDMetric", "InceptionFeatures", "LPIPS", "LPIPSMetric", "LSEMetric",
           "Metric", "SyncNetScorer", "VideoSample", "cpbd", "frechet_distance", "lmd", "psnr", "ssim"]
