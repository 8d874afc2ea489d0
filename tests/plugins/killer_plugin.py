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


@register_model("example_killed_dub")
class KilledDubber(ExampleInpainter):
    """Dubs like the example inpainter; the ``kill_at_generate``-th ``generate`` call of a process SIGKILLs it first
    (an interrupted leaderboard)."""

    default_config = {**ExampleInpainter.default_config, "kill_at_generate": -1}
    calls = 0

    def generate(self, source_video, audio, output, **options):
        KilledDubber.calls += 1
        if KilledDubber.calls == self.config["kill_at_generate"]:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().generate(source_video, audio, output, **options)
