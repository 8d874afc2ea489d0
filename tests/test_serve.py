"""``talkingface serve`` over a real socket on 127.0.0.1: health, a dub of 48 kHz stereo audio, a bad upload
answered with a 400 while the server goes on, and two concurrent requests queued rather than interleaved.
Bounded: one server per dubbing model (DINet, LawDNet), six requests each, each with a timeout."""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import requests

import talkingface
from conftest import subprocess_env
from helpers import cli_tokens
from talkingface.media import probe_video, write_wav
from test_preprocess import face_video

SETTINGS = {"dinet": {"mouth_region_size": 32, "audio_feature": "mfcc", "infer_batch": 4},
            "lawdnet": {"mouth_region_size": 32, "audio_feature": "mfcc", "sync_audio_feature": "mfcc", "infer_batch": 4}}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module", params=sorted(SETTINGS))
def server(tmp_path_factory, request):
    name = request.param
    work = tmp_path_factory.mktemp(f"serve_{name}")
    template = face_video(work / "template.mp4", seconds=0.6)
    model = talkingface.build_model(name, {name: SETTINGS[name], "progress": False})
    checkpoint = model.save_weights(work / f"{name}.pth")
    port = free_port()
    scratch = work / "tmp"  # this server's request folders (another test's server may run beside it)
    scratch.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "talkingface.cli", "serve", "--model", name, "--checkpoint", str(checkpoint),
         "--video", str(template), "--port", str(port), "--paste", "feathered",
         *cli_tokens({name: SETTINGS[name], "progress": False})],
        env={**subprocess_env(threads=1), "TMPDIR": str(scratch)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            if process.poll() is not None:
                pytest.fail(f"the server exited: {process.stdout.read()}")
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("the server did not come up in 120 s")
    yield url, work, name, scratch
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def speech(path: Path, seconds: float, rate: int = 48000, channels: int = 2) -> Path:
    """A modulated tone as 16-bit PCM WAV at ``rate`` with ``channels`` channels."""
    t = np.arange(int(seconds * rate)) / rate
    signal = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    if channels == 1:
        return write_wav(path, signal.astype(np.float32), rate)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.repeat((signal * 32767).astype("<i2")[:, None], channels, axis=1).tobytes())
    return path


def post(url: str, path: Path, name: str | None = None) -> requests.Response:
    with open(path, "rb") as handle:
        return requests.post(f"{url}/dub", files={"audio": (name or path.name, handle)}, timeout=120)


@pytest.mark.slow
def test_health_dub_bad_upload_and_queueing(server, tmp_path):
    url, work, name, scratch = server
    health = requests.get(f"{url}/health", timeout=10).json()
    assert health["status"] == "ok" and health["model"] == name and health["frames"] == 15

    answer = post(url, speech(tmp_path / "speech.wav", 1.0))  # 48 kHz stereo: resampled to 16 kHz mono
    assert answer.status_code == 200 and answer.headers["content-type"] == "video/mp4"
    (tmp_path / "out.mp4").write_bytes(answer.content)
    info = probe_video(tmp_path / "out.mp4")
    assert info.has_audio and abs(info.frame_count - 25) <= 1  # 1 s of audio at the template's 25 fps

    (tmp_path / "notes.wav").write_text("not audio at all")
    bad = post(url, tmp_path / "notes.wav")
    assert bad.status_code == 400 and "notes.wav" in bad.json()["detail"], bad.text
    empty = requests.post(f"{url}/dub", files={"audio": ("empty.wav", b"")}, timeout=30)
    assert empty.status_code == 400 and "empty" in empty.json()["detail"]

    answers: list[requests.Response] = []
    clips = [speech(tmp_path / f"c{i}.wav", 0.8, 16000, 1) for i in range(2)]
    threads = [threading.Thread(target=lambda c=c: answers.append(post(url, c))) for c in clips]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert [a.status_code for a in answers] == [200, 200]
    spans = sorted((float(a.headers["X-Dub-Started"]), float(a.headers["X-Dub-Finished"])) for a in answers)
    assert spans[0][1] <= spans[1][0], spans  # one after the other on the model
    assert requests.get(f"{url}/health", timeout=10).json()["served"] == 3
    assert not list(scratch.glob("talkingface-serve-*/upload*"))  # request files are removed
