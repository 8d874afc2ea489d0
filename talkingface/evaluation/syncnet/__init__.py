"""SyncNet (syncnet_v2) and the LSE-D / LSE-C lip-sync metrics computed with it."""
from .network import SyncNet
from .scorer import SyncNetScorer

__all__ = ["SyncNet", "SyncNetScorer"]
