"""talkingface.profiling: exclusive stage times, FLOPs attributed to the innermost stage, per-stage memory peaks."""
import json
import subprocess
import sys
import threading
import time

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from talkingface.profiling import OUTSIDE, StagedContext, StageRecorder, counting_flops, stage, staged


def test_stage_without_a_recorder_does_nothing():
    with stage("anything"):
        value = 1
    assert value == 1 and not counting_flops()


def test_nested_stages_get_exclusive_times_that_add_up_to_the_wall_time():
    with StageRecorder(memory=False) as recorder:
        with stage("outer"):
            time.sleep(0.03)
            with stage("inner"):
                time.sleep(0.09)
            time.sleep(0.03)
        with stage("inner"):
            time.sleep(0.03)
    stats = recorder.stats
    assert stats["outer"].calls == 1 and stats["inner"].calls == 2
    assert 0.06 <= stats["outer"].seconds < 0.10  # its own 60 ms, not the inner 90 ms
    assert stats["inner"].seconds >= 0.12
    total = sum(s.seconds for s in stats.values())
    assert total == pytest.approx(recorder.wall_seconds, abs=5e-3)
    assert recorder.order[:3] == [OUTSIDE, "outer", "inner"]


def test_flops_go_to_the_innermost_stage():
    a, b = torch.randn(64, 32), torch.randn(32, 16)
    image, weight = torch.randn(1, 3, 20, 20), torch.randn(8, 3, 3, 3)
    with StageRecorder(flops=True, memory=False) as recorder:
        assert counting_flops()
        with stage("matmul"):
            a @ b
            with stage("conv"):
                torch.nn.functional.conv2d(image, weight)
        a @ b  # outside every stage
    conv = 2 * 8 * 18 * 18 * 3 * 3 * 3
    assert recorder.stats["matmul"].flops == 2 * 64 * 32 * 16
    assert recorder.stats["conv"].flops == conv
    assert recorder.stats[OUTSIDE].flops == 2 * 64 * 32 * 16
    with FlopCounterMode(display=False) as counter:  # the same counter as the recorder's
        torch.nn.functional.conv2d(image, weight)
    assert counter.get_total_flops() == conv


def test_other_threads_are_timed_but_their_flops_are_not_counted():
    def work():
        with stage("background"):
            torch.randn(32, 32) @ torch.randn(32, 32)
            time.sleep(0.02)

    with StageRecorder(flops=True, memory=False) as recorder:
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    assert recorder.stats["background"].calls == 1 and recorder.stats["background"].seconds >= 0.02
    assert recorder.stats["background"].flops == 0


PEAKS = """
import json, numpy as np
from talkingface.profiling import StageRecorder, stage
with StageRecorder() as recorder:
    with stage("small"):
        np.ones(1000)
    with stage("big"):
        block = np.ones(300 * 2**20 // 8)  # 300 MB, touched
        del block
    with stage("after"):
        np.ones(1000)
print(json.dumps({"exact": recorder.memory_resettable,
                  **{name: s.peak_rss_bytes for name, s in recorder.stats.items()}}))
"""


def test_the_peak_rss_belongs_to_the_stage_that_made_it():
    """In a fresh process (a test worker's freed memory would be reused without raising its RSS)."""
    result = subprocess.run([sys.executable, "-c", PEAKS], capture_output=True, text=True, check=True)
    peaks = json.loads(result.stdout.strip().splitlines()[-1])
    if not peaks["exact"]:
        pytest.skip("this kernel does not let a process reset its peak RSS (/proc/self/clear_refs)")
    assert peaks["big"] - peaks["small"] > 250 * 2**20
    assert peaks["big"] - peaks["after"] > 250 * 2**20  # reset at the boundary


def test_staged_iterators_and_contexts_are_timed_as_their_stage():
    def slow():
        for i in range(3):
            time.sleep(0.01)
            yield i

    class Closing:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            time.sleep(0.02)

    with StageRecorder(memory=False) as recorder:
        assert list(staged("decode", slow())) == [0, 1, 2]
        with StagedContext("encode", Closing()):
            pass
    assert recorder.stats["decode"].calls == 4  # three items and the end
    assert recorder.stats["decode"].seconds >= 0.03
    assert recorder.stats["encode"].seconds >= 0.02 and recorder.stats["encode"].calls == 2


def test_one_recorder_at_a_time():
    with StageRecorder(memory=False):
        with pytest.raises(RuntimeError, match="already recording"):
            with StageRecorder(memory=False):
                pass
    with StageRecorder(memory=False):  # the first one ended cleanly
        pass
