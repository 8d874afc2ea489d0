"""``talkingface benchmark``: a tiny DINet dubbing one second of the synthetic talking head in a child process,
every field of the report present and consistent, the files written; bad requests fail cleanly."""
import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import talkingface
from talkingface.benchmark import RUN_FIELDS, STAGE_FIELDS, benchmark, dubbing_models, parse_size
from talkingface.cli import main
from talkingface.dubbing import LOOP_STAGES
from talkingface.errors import ConfigError
from talkingface.profiling import OUTSIDE

TINY = {"dinet": {"mouth_region_size": 64}}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    return out, benchmark(["dinet"], ["fp32"], out, size=(320, 180), seconds=1.0, batch=4, flop_frames=2,
                          peak_size=512, config=TINY)


def test_every_field_of_the_report_is_present(report):
    out, result = report
    assert result["failures"] == [] and len(result["runs"]) == 1
    run = result["runs"][0]
    assert set(RUN_FIELDS) <= set(run)
    assert run["model"] == "dinet" and run["dtype"] == "fp32" and run["size"] == [320, 180]
    assert run["frames"] in (25, 26) and run["frames_per_s"] > 0  # the audio track may be padded by a frame and run["peak_rss_mb"] > 100
    assert run["peak_gpu_mb"] is None  # CPU
    names = [s["stage"] for s in run["stages"]]
    assert names == [*LOOP_STAGES, OUTSIDE]  # DINet declares no stages of its own
    for stage in run["stages"]:
        assert set(STAGE_FIELDS) <= set(stage)
    shares = sum(s["share_of_wall"] for s in run["stages"])
    assert 0.95 < shares <= 1.0 + 1e-3  # exclusive times, no overlap on a CPU
    machine = run["machine"]
    assert machine["cpu"] and machine["torch"] == torch.__version__ and machine["aten_cpu_capability"]
    assert run["limit_gflops"] == max(run["matmul_peak_gflops"]["fp32"]) and len(run["matmul_peak_gflops"]["fp32"]) == 2
    assert any("random weights" in note for note in run["notes"])
    saved = json.loads((out / "benchmark.json").read_text())
    assert saved["runs"][0]["frames"] == run["frames"]
    assert (out / "benchmark.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "benchmark.txt").read_text()
    assert "generator" in text and "end to end" in text and "took" in text


def test_the_generator_flops_are_the_generators_own(report):
    """The FLOPs per frame of the generator stage equal a direct count of DINet's generator on one frame."""
    _, result = report
    run = result["runs"][0]
    generator = next(s for s in run["stages"] if s["stage"] == "generator")
    torch.manual_seed(0)
    model = talkingface.build_model("dinet", {"dinet": {**TINY["dinet"], "audio_feature": "mfcc"}}).eval()
    height, width = model.networks.image_size
    inputs = (torch.rand(1, 3, height, width), torch.rand(1, 15, height, width),
              torch.rand(1, model.networks.audio_channel, 5))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.networks.generator(*inputs)
    assert generator["gflop_per_frame"] == pytest.approx(counter.get_total_flops() / 1e9, rel=1e-3)
    assert generator["share_of_limit"] == pytest.approx(generator["gflops"] / run["limit_gflops"], rel=1e-2)
    assert generator["frames_per_s"] == pytest.approx(run["frames"] / generator["seconds"], rel=1e-2)
    assert run["gflop_per_frame"] >= generator["gflop_per_frame"]


def test_all_means_every_dubbing_model():
    models = dubbing_models()
    assert {"dinet", "lawdnet", "videoretalking", "audiodvp", "gsmoothface"} <= set(models)
    assert "example_inpainter" not in models or talkingface.MODELS.get("example_inpainter").dubbing_hooks


def test_sizes_are_parsed_or_refused():
    assert parse_size("720p") == (1280, 720) and parse_size("640x360") == (640, 360)
    for bad in ("huge", "641x360", "10x10"):
        with pytest.raises(ConfigError):
            parse_size(bad)


def test_bad_requests_fail_with_one_line_and_no_report(tmp_path, capsys):
    assert main(["benchmark", "--model", "nosuchmodel", "--out", str(tmp_path / "a")]) == 1
    assert "nosuchmodel" in capsys.readouterr().err
    assert main(["benchmark", "--model", "dinet", "--size", "huge", "--out", str(tmp_path / "b")]) == 1
    assert "--size" in capsys.readouterr().err
    assert main(["benchmark", "--model", "all", "--checkpoint", "x.pth", "--out", str(tmp_path / "c")]) == 1
    assert not any((tmp_path / name).exists() for name in "abc")


def test_a_refused_dtype_is_a_failure_of_that_run(tmp_path):
    result = benchmark(["dinet"], ["fp16"], tmp_path / "out", size=(320, 180), seconds=0.2, peak_size=256,
                       config=TINY)
    assert result["runs"] == [] and "fp16 is for CUDA" in result["failures"][0]["error"]
    assert "FAILED dinet fp16" in (tmp_path / "out" / "benchmark.txt").read_text()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_cuda_path_reports_gpu_memory_and_runs_fp16(tmp_path):
    result = benchmark(["dinet"], ["fp32", "fp16"], tmp_path, device="cuda", size=(320, 180), seconds=0.4,
                       config=TINY)
    assert not result["failures"]
    for run in result["runs"]:
        assert run["device"].startswith("cuda") and run["peak_gpu_mb"] > 0
        assert run["machine"]["device_name"] == torch.cuda.get_device_name(0)
