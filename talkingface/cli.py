"""Command line: ``run_talkingface.py`` and the ``talkingface`` command with its subcommands.

Errors are printed as one line on stderr with a non-zero exit; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
import traceback
from typing import Callable, Sequence

from .config import parse_cli_overrides
from .errors import TalkingFaceError

OVERRIDES_HELP = "any config key as --key=value or --section.key=value (YAML-typed), e.g. --train.max_steps=100"
RUN_DESCRIPTION = "Preprocess (if needed), train, evaluate on the test split and print a results table."
LISTABLE = {"models": "MODELS", "datasets": "DATASETS", "metrics": "METRICS",
            "audio_features": "AUDIO_FEATURES", "face_backends": "FACE_BACKENDS",
            "preprocess_steps": "PREPROCESS_STEPS"}


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config_files", nargs="+", default=[], metavar="YAML",
                        help="YAML files layered over the built-in defaults, in order")
    parser.add_argument("--data_dir", help="the dataset's raw folder (same as --data.raw_dir)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def _training_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --dataset, --resume and the common options (run_talkingface.py, run, train)."""
    parser.add_argument("--model", "-m", required=True, help="registered model name (see `talkingface list`)")
    parser.add_argument("--dataset", "-d", required=True, help="registered dataset name")
    parser.add_argument("--resume", help="continue training from a last.pth checkpoint")
    _common(parser)


def run_parser(prog: str = "run_talkingface.py") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=RUN_DESCRIPTION, epilog=OVERRIDES_HELP)
    _training_arguments(parser)
    return parser


def generate_options(model: str) -> tuple:
    """The generate options ``model`` declares (``TalkingFaceModel.generate_options``); none for an unknown name,
    which the command then reports."""
    from .errors import RegistryError
    from .registry import MODELS

    try:
        return tuple(getattr(MODELS.get(model), "generate_options", ()))
    except RegistryError:
        return ()


def _infer_model(argv: Sequence[str]) -> str | None:
    """The ``--model`` of an ``infer`` or ``serve`` command line (so that its options can be added to the parser)."""
    if not argv or argv[0] not in ("infer", "serve"):
        return None
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model", "-m")
    return pre.parse_known_args(list(argv[1:]))[0].model


def _generate_kwargs(args: argparse.Namespace) -> dict:
    """The declared generate options given on the command line, parsed by each option's type."""
    kwargs = {}
    for option in generate_options(args.model):
        text = getattr(args, option.name, None)
        if text is None:
            continue
        try:
            kwargs[option.name] = option.type(text)
        except (TypeError, ValueError) as exc:
            raise TalkingFaceError(f"--{option.name}: cannot read {text!r} ({exc})") from None
    return kwargs


def _add_generate_options(parser: argparse.ArgumentParser, model: str | None) -> None:
    """Flags for the generate options ``model`` declares (``infer`` and ``serve``)."""
    if not model:
        return
    group = parser.add_argument_group(f"generate options of {model}")
    for option in generate_options(model):
        choices = f" (one of: {', '.join(map(str, option.choices))})" if option.choices else ""
        group.add_argument(f"--{option.name}", help=option.help + choices)


def main_parser(infer_model: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="talkingface", description="Audio-driven talking-face toolkit.",
                                     epilog=OVERRIDES_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list registered models, datasets, metrics, ...")
    p.add_argument("kind", nargs="?", choices=sorted(LISTABLE), help="only this registry")
    p.add_argument("--weights", action="store_true",
                   help="the weight files the toolkit looks for under checkpoints/ (a Markdown table)")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")

    p = sub.add_parser("run", help="preprocess, train, evaluate (same as run_talkingface.py)",
                       description=RUN_DESCRIPTION, epilog=OVERRIDES_HELP)
    _training_arguments(p)

    p = sub.add_parser("preprocess", help="build the processed clip store of a dataset", epilog=OVERRIDES_HELP)
    p.add_argument("--dataset", "-d", required=True, help="registered dataset name")
    p.add_argument("--force", action="store_true", help="rebuild even if the store is up to date")
    _common(p)

    p = sub.add_parser("train", help="preprocess if needed and train (no evaluation)", epilog=OVERRIDES_HELP)
    _training_arguments(p)

    p = sub.add_parser("infer", help="dub a video with an audio track", epilog=OVERRIDES_HELP,
                       description="Dub a video. With --model, --help also lists that model's generate options.")
    p.add_argument("--model", "-m", required=True, help="registered model name")
    p.add_argument("--checkpoint", required=True, help="our checkpoint or the authors' release file")
    p.add_argument("--video", required=True, help="source video")
    p.add_argument("--audio", required=True, help="driving audio (any format with an audio stream)")
    p.add_argument("--out", required=True, help="output mp4")
    _add_generate_options(p, infer_model)
    _common(p)

    p = sub.add_parser("serve", help="an HTTP dubbing server over a template video (the 'serve' extra)",
                       epilog=OVERRIDES_HELP, description="POST /dub an audio file, get the template dubbed; GET /health.")
    p.add_argument("--model", "-m", required=True, help="registered model name (one with dubbing hooks)")
    p.add_argument("--checkpoint", required=True, help="our checkpoint or the authors' release file")
    p.add_argument("--video", required=True, help="the template video, prepared once at start")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    _add_generate_options(p, infer_model)
    _common(p)

    p = sub.add_parser("benchmark", help="per-stage speed and memory of dubbing, against the machine's limit",
                       description="Dub a synthetic (or given) video with each model through infer's code path, "
                                   "timing every stage; FLOPs and the matmul limit measured in the same run. "
                                   "Writes benchmark.json, benchmark.png and benchmark.txt into --out.")
    p.add_argument("--model", "-m", nargs="+", required=True, help="model name(s), or all (every dubbing model)")
    p.add_argument("--checkpoint", help="weights to load (default: random weights in the model's layout: timing only)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--dtype", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16"],
                   help="compute dtype(s) of the generator, each a run of its own (e.g. --dtype fp32 bf16)")
    p.add_argument("--size", default="720p", help="the synthetic video's size: 720p (default), 1080p, 480p or WxH")
    p.add_argument("--seconds", type=float, default=2.0, help="the synthetic video's length (default 2)")
    p.add_argument("--batch", type=int, help="frames per generator call (default: the model's)")
    p.add_argument("--video", help="dub this video instead of the synthetic one")
    p.add_argument("--audio", help="with this audio (default: the video's own)")
    p.add_argument("--flop-frames", type=int, default=8, help="frames of the FLOP-counting dub (default 8; 0: no count)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    p.add_argument("--out", default="benchmark-results", help="where the report goes (default benchmark-results)")
    p.add_argument("--work", help="where inputs are made and kept (default: <out>/work)")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")

    p = sub.add_parser("evaluate", help="score checkpoints on a dataset, or a folder of videos",
                       epilog=OVERRIDES_HELP)
    p.add_argument("--model", "-m", help="registered model name (with --dataset and --checkpoints)")
    p.add_argument("--dataset", "-d", help="registered dataset name")
    p.add_argument("--checkpoints", help="glob of checkpoints, e.g. 'saved/**/*.pth'")
    p.add_argument("--videos", help="folder of generated .mp4 files")
    p.add_argument("--references", help="folder of reference .mp4 files with the same names")
    p.add_argument("--metrics", nargs="+", help="metrics for --videos (default: evaluate.metrics)")
    p.add_argument("--output", help="where --videos results are written (default: the videos folder)")
    _common(p)

    p = sub.add_parser("leaderboard", help="several entries (models, other tools' videos) on the same clips, one "
                                           "protocol, with ground-truth and control rows", epilog=OVERRIDES_HELP,
                       description="Dub the dataset's evaluate.split with every model entry, score every entry's "
                                   "videos with one protocol beside the ground truth and the ground truth with its "
                                   "audio shifted; write a table, Markdown, CSV, JSON and a static HTML page. "
                                   "Resumable: rerun into the same --out.")
    p.add_argument("--dataset", "-d", required=True, help="registered dataset name")
    p.add_argument("--entries", nargs="+", default=[], metavar="NAME=TARGET",
                   help="MODEL=CHECKPOINT_OR_RUN, NAME=MODEL:CHECKPOINT_OR_RUN or NAME=VIDEO_FOLDER "
                        "(<clip>.mp4 files made by any tool)")
    p.add_argument("--entries-file", action="append", default=[], metavar="YAML", help="entries as YAML (docs)")
    p.add_argument("--out", required=True, help="the leaderboard's folder (its state: rerun into it to resume)")
    p.add_argument("--metrics", nargs="+", help="metrics (default: evaluate.metrics)")
    p.add_argument("--control-shift", type=float, default=1.5,
                   help="seconds of audio shift of the ground-truth control row (0: no control row)")
    p.add_argument("--speed", nargs="+", default=[], metavar="BENCHMARK_JSON",
                   help="talkingface benchmark reports of the same entries on this machine (frames/s column)")
    _common(p)

    p = sub.add_parser("convert-deepspeech", help="convert DeepSpeech v0.1.0's output_graph.pb to safetensors")
    p.add_argument("graph", help="the frozen TensorFlow graph, output_graph.pb")
    p.add_argument("output", help="where to write, e.g. checkpoints/deepspeech-0.1.0.safetensors")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")

    p = sub.add_parser("face3d", help="3D face model files: build BFM_model_front.mat / data.mat, write the stand-in")
    actions = p.add_subparsers(dest="face3d_action", required=True, metavar="ACTION")
    q = actions.add_parser("build-bfm", help="build the derived face model file from the raw BFM09 files")
    q.add_argument("folder", help="the BFM folder (01_MorphableModel.mat, Exp_Pca.bin, ...; docs/face3d.md)")
    q.add_argument("--out", help="where to write (default: BFM_model_front.mat or data.mat in the folder)")
    q.add_argument("--convention", default="deep3dfacerecon",
                   help="deep3dfacerecon (BFM_model_front.mat, default) or audiodvp (data.mat)")
    q.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    q = actions.add_parser("standin", help="write the synthetic stand-in for the BFM files (not the real model)")
    q.add_argument("folder", help="where to write")
    q.add_argument("--vertices", type=int, default=1000, help="front-face vertices (35709 for BFM's size)")
    q.add_argument("--triangles", type=int, help="triangles (default: BFM's proportion, 70789 for 35709 vertices)")
    q.add_argument("--audiodvp", action="store_true", help="also write AudioDVP's data.mat")
    q.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return parser


def _list(kind: str | None, weights: bool = False) -> int:
    from . import registry

    if weights:
        from .weights import weights_catalogue, weights_table

        registry.discover_plugins()
        print(weights_table(weights_catalogue()))
        return 0
    for name in [kind] if kind else LISTABLE:
        names = getattr(registry, LISTABLE[name]).names()
        print(f"{name}: {', '.join(names) if names else '(none)'}")
    return 0


def _with_overrides(args: argparse.Namespace, extra: list[str]) -> dict:
    overrides = parse_cli_overrides(extra)
    if getattr(args, "data_dir", None):
        overrides.setdefault("data", {})["raw_dir"] = args.data_dir
    if getattr(args, "resume", None):
        overrides.setdefault("train", {})["resume"] = args.resume
    return overrides


def _dispatch(args: argparse.Namespace, extra: list[str]) -> int:
    from . import pipeline

    command = getattr(args, "command", "run")
    if command == "list":
        if extra:
            raise TalkingFaceError(f"unexpected arguments: {' '.join(extra)}")
        return _list(args.kind, args.weights)
    if command == "convert-deepspeech":
        if extra:
            raise TalkingFaceError(f"unexpected arguments: {' '.join(extra)}")
        from .audio.deepspeech import convert_graph

        print(convert_graph(args.graph, args.output))
        return 0
    if command == "face3d":
        if extra:
            raise TalkingFaceError(f"unexpected arguments: {' '.join(extra)}")
        from . import face3d

        if args.face3d_action == "build-bfm":
            out = face3d.build_bfm(args.folder, args.out, args.convention)
        else:
            out = face3d.write_standin_bfm(args.folder, args.vertices, args.triangles, audiodvp=args.audiodvp)
        print(f"{out}{' (synthetic stand-in, not the Basel Face Model)' if face3d.is_standin(out) else ''}")
        return 0
    if command == "benchmark":
        if extra:
            raise TalkingFaceError(f"unexpected arguments: {' '.join(extra)}")
        from .benchmark.command import main as benchmark_main

        return benchmark_main(args)
    overrides = _with_overrides(args, extra)
    files = args.config_files
    if command == "run":
        pipeline.run(args.model, args.dataset, config_files=files, cli_overrides=overrides)
    elif command == "train":
        overrides.setdefault("evaluate", {})["enabled"] = False
        pipeline.run(args.model, args.dataset, config_files=files, cli_overrides=overrides)
    elif command == "preprocess":
        from .config import load_config
        from .log import setup_logging

        config = load_config(dataset=args.dataset, config_files=files, cli_overrides=overrides)
        setup_logging(config["log_level"])
        store = pipeline.preprocess(args.dataset, config, force=args.force)
        print(store.root)
    elif command == "infer":
        out = pipeline.infer(args.model, args.checkpoint, args.video, args.audio, args.out,
                             config_files=files, cli_overrides=overrides, **_generate_kwargs(args))
        print(out)
    elif command == "serve":
        from .serving import serve

        serve(args.model, args.checkpoint, args.video, args.host, args.port, config_files=files,
              cli_overrides=overrides, options=_generate_kwargs(args))
    elif command == "leaderboard":
        from .config import load_config
        from .leaderboard import collect_entries, leaderboard

        load_config(None, args.dataset, files, None, overrides)  # checked first; imports the plugins entries name
        entries = collect_entries(args.entries, args.entries_file)
        leaderboard(args.dataset, entries, args.out, args.metrics, args.control_shift or None, args.speed,
                    config_files=files, cli_overrides=overrides)
    elif command == "evaluate":
        if args.videos:
            if args.checkpoints or args.model:
                raise TalkingFaceError("use either --videos [--references] or --model/--dataset/--checkpoints")
            pipeline.evaluate_videos(args.videos, args.references, args.metrics, args.output,
                                     config_files=files, cli_overrides=overrides)
        elif args.model and args.dataset and args.checkpoints:
            pipeline.evaluate_checkpoints(args.model, args.dataset, args.checkpoints,
                                          config_files=files, cli_overrides=overrides)
        else:
            raise TalkingFaceError("evaluate needs --videos DIR, or --model, --dataset and --checkpoints")
    return 0


def _guarded(parse: Callable[[], tuple[argparse.Namespace, list[str]]]) -> int:
    args, extra = parse()
    try:
        return _dispatch(args, extra)
    except (TalkingFaceError, FloatingPointError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; rerun with --resume <run>/checkpoints/last.pth to continue", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected bug: still one line unless --debug
        if args.debug:
            traceback.print_exc()
        else:
            print(f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
                  file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``talkingface`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return _guarded(lambda: main_parser(_infer_model(argv)).parse_known_args(argv))


def run_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``run_talkingface.py``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return _guarded(lambda: run_parser().parse_known_args(argv))


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
