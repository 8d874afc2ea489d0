"""Built-in dataset layouts register themselves on import (none yet: hdtf, lrs2, custom and demo
arrive with the preprocessing pipeline)."""
