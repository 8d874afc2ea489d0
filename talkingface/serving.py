"""``talkingface serve``: an HTTP dubbing server over a template video, for any model with dubbing hooks.

The template is tracked, its references chosen and its crops kept once at start (``dubbing.prepare_template``);
``POST /dub`` takes an audio file of any format and sample rate (resampled to 16 kHz) and returns the dubbed
mp4; ``GET /health`` describes what is served. Requests are queued on one lock, never interleaved on the
model; a file that is not audio gets a 400 with the reason and the server goes on. Built on FastAPI and
uvicorn (the ``serve`` extra). Binds to 127.0.0.1 unless told otherwise.
"""
# no `from __future__ import annotations`: FastAPI reads the endpoint annotations at run time

import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError, TalkingFaceError
from .optional import require

logger = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 100 * 1024 * 1024


class DubbingService:
    """A model and a prepared template; ``dub`` runs one request at a time."""

    def __init__(self, model: Any, template: str | Path, options: Mapping[str, Any] | None = None):
        from .dubbing import prepare_template

        options = dict(options or {})
        self.model, self.template, self.options = model, Path(template), options
        self.hooks = model.dubbing_hooks(**options)
        if self.hooks is None:
            raise ConfigError(f"model {model.registered_name!r} dubs with a loop of its own; `talkingface serve` needs "
                              "a model with dubbing hooks (talkingface.dubbing.DubbingHooks)")
        self.declared = tuple(o for o in getattr(model, "generate_options", ()) if o.name in options)
        self.prepared = prepare_template(self.hooks, self.template, **{k: options[k] for k in ("fps", "face")
                                                                       if options.get(k) is not None})
        self.lock = threading.Lock()
        self.served = 0

    def describe(self) -> dict[str, Any]:
        return {"status": "ok", "model": self.model.registered_name, "template": str(self.template),
                "frames": int(len(self.prepared.landmarks)), "fps": self.prepared.fps, "served": self.served}

    def dub(self, audio: Path, output: Path) -> tuple[float, float]:
        """Dub the template with ``audio`` into ``output``; returns the (start, end) wall times of the work."""
        from .dubbing import dub

        with self.lock:
            start = time.time()
            extra = {k: v for k, v in self.options.items() if k not in ("fps", "face")}
            dub(self.hooks, self.template, audio, output, self.declared, prepared=self.prepared, progress=False,
                **extra)
            self.served += 1
            return start, time.time()


def create_app(service: DubbingService) -> Any:
    """The FastAPI application serving ``service``."""
    fastapi = require("fastapi", "talkingface serve", "serve")
    require("multipart", "talkingface serve (file uploads)", "serve")
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import FileResponse
    from starlette.background import BackgroundTask

    app = fastapi.FastAPI(title="talkingface dubbing", version="1")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return service.describe()

    @app.post("/dub")
    async def dub_audio(audio: fastapi.UploadFile = fastapi.File(...)) -> Any:
        data = await audio.read(MAX_UPLOAD_BYTES + 1)
        if not data:
            raise fastapi.HTTPException(400, "the uploaded audio file is empty")
        if len(data) > MAX_UPLOAD_BYTES:
            raise fastapi.HTTPException(413, f"the upload is larger than {MAX_UPLOAD_BYTES} bytes")
        work = Path(tempfile.mkdtemp(prefix="talkingface-serve-"))
        source = work / ("upload" + Path(audio.filename or "audio").suffix[:8])
        source.write_bytes(data)
        output = work / "dubbed.mp4"
        try:
            start, end = await run_in_threadpool(service.dub, source, output)
        except TalkingFaceError as exc:  # bad audio: the request fails, the server goes on
            shutil.rmtree(work, ignore_errors=True)
            message = str(exc).replace(str(source), audio.filename or "upload")
            raise fastapi.HTTPException(400, message) from None
        except Exception:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return FileResponse(output, media_type="video/mp4", filename="dubbed.mp4",
                            headers={"X-Dub-Started": f"{start:.6f}", "X-Dub-Finished": f"{end:.6f}"},
                            background=BackgroundTask(shutil.rmtree, work, ignore_errors=True))

    return app


def serve(model: str, checkpoint: str | Path, video: str | Path, host: str = "127.0.0.1", port: int = 8000,
          config_files: tuple = (), cli_overrides: Mapping | None = None, options: Mapping[str, Any] | None = None
          ) -> None:
    """Build ``model`` with ``checkpoint`` (a weights file or a run folder, under the configuration it was trained
    with: ``pipeline.trained_config``), prepare ``video`` and serve until interrupted."""
    from .log import setup_logging
    from .pipeline import build_model, trained_config
    from .device import resolve_device

    uvicorn = require("uvicorn", "talkingface serve", "serve")
    weights, config = trained_config(model, checkpoint, config_files, cli_overrides=cli_overrides)
    setup_logging(config["log_level"])
    net = build_model(model, config, checkpoint=weights).to(resolve_device(config["device"])).eval()
    service = DubbingService(net, video, options)
    logger.info("serving %s on http://%s:%d (template %s, %d frames)", model, host, port, video,
                len(service.prepared.landmarks))
    uvicorn.run(create_app(service), host=host, port=int(port), log_level="warning")
