"""FID as pytorch-fid computes it: the FID Inception-v3, its preprocessing, and the Fréchet distance."""
from .features import InceptionFeatures, load_fid_inception
from .frechet import frechet_distance, frechet_distance_from_stats
from .inception import FIDInceptionV3
from .metric import FIDMetric

__all__ = ["FIDInceptionV3", "FIDMetric", "InceptionFeatures", "frechet_distance",
           "frechet_distance_from_stats", "load_fid_inception"]
