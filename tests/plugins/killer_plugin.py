"""Test-only model: the example inpainter that SIGKILLs its own process at a chosen step."""
import os
import signal

from talkingface import register_model
from talkingface_example import ExampleInpainter


@register_model("example_killed")
class KilledInpainter(ExampleInpainter):
    default_config = {**ExampleInpainter.default_config, "kill_at_step": -1}

    def training_step(self, batch, step):
        if step == self.config["kill_at_step"]:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no final checkpoint: a real crash
        return super().training_step(batch, step)
