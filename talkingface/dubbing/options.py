"""Generate options: the ones every dub takes, and how a model declares its own (shown by ``infer --help``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from ..errors import ConfigError


@dataclass(frozen=True)
class GenerateOption:
    """One keyword of ``generate`` and flag of ``talkingface infer`` (mmagic's ``extra_parameters``)."""

    name: str
    help: str
    type: Callable[[str], Any] = str  # how the CLI parses the flag's text
    choices: tuple[Any, ...] | None = None


def face_flag(text: str) -> str | int:
    """``--face``: ``largest`` or a non-negative index."""
    if text == "largest":
        return text
    if text.isdigit():
        return int(text)
    raise ConfigError(f"--face must be 'largest' or a face index (0, 1, ...), got {text!r}")


LOOP_OPTIONS: tuple[GenerateOption, ...] = (
    GenerateOption("fps", "output frame rate (default: the source video's)", float),
    GenerateOption("face", "which face to dub when there are several: largest (default) or an index counted "
                           "left to right", face_flag),
    GenerateOption("batch", "frames per generator call (default: the model's setting; 8 on CUDA, 1 on CPU)", int),
    GenerateOption("dtype", "the generator's compute dtype: fp32, bf16 (CUDA, or a CPU with AVX512-BF16 or AMX; "
                            "refused elsewhere) or fp16 (CUDA); default fp16 on CUDA with the model's amp setting, "
                            "else fp32", str, ("fp32", "bf16", "fp16")),
)
"""Options of the shared dubbing loop, valid for every dubbing model."""
# keywords for Python callers only: no flag (``--seed`` is the run's seed; the CLI sets ``--<model>.seed``)
PROGRAM_OPTIONS = ("progress", "seed")


def check_options(options: Mapping[str, Any], declared: Iterable[GenerateOption], model: str) -> None:
    """ConfigError for a keyword that neither the loop nor ``model`` declares, or a value outside its choices."""
    known = {option.name: option for option in (*LOOP_OPTIONS, *declared)}
    unknown = sorted(set(options) - set(known) - set(PROGRAM_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown {model} generate option(s): {', '.join(unknown)} "
                          f"(known: {', '.join(sorted([*known, *PROGRAM_OPTIONS]))})")
    for name, value in options.items():
        choices = known[name].choices if name in known else None
        if choices and value is not None and value not in choices:
            raise ConfigError(f"{name} must be one of {choices}, got {value!r}")
