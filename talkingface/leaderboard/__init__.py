"""``talkingface leaderboard``: several models and other tools' videos scored on the same clips with one protocol,
beside the ground truth and its shifted-audio control (docs/leaderboard.md)."""
from .entries import Entry, collect_entries, load_entries_file, parse_entry
from .protocol import card_differences, protocol_card
from .run import Board, leaderboard

__all__ = ["Board", "Entry", "card_differences", "collect_entries", "leaderboard", "load_entries_file",
           "parse_entry", "protocol_card"]
