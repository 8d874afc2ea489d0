"""DeepSpeech v0.1.0 weights: from the frozen ``output_graph.pb`` to ``DeepSpeechNet``'s state dict.

Node names of the v0.1.0 graph (``DeepSpeech.py`` ``BiRNN`` at tag v0.1.0, exported with TF 1.3):
``h1 b1 h2 b2 h3 b3 h5 b5 h6 b6`` (dense ``[in, out]`` and ``[out]``) and
``bidirectional_rnn/{fw,bw}/basic_lstm_cell/{kernel,bias}`` (TF >= 1.2 names; graphs from TF <= 1.1
call them ``weights``/``biases``, which are accepted too). Dense kernels are transposed for
``nn.Linear``. A BasicLSTMCell kernel is ``[input + hidden, 4 hidden]`` with gate blocks ordered
``i, j, f, o`` (j: the candidate, PyTorch's g) and the cell adds ``forget_bias`` to ``f``; ``nn.LSTM``
keeps ``weight_ih [4h, input]`` and ``weight_hh [4h, hidden]`` with blocks ordered ``i, f, g, o``, so
the blocks are reordered, transposed, split at ``input``, and ``forget_bias`` is folded into
``bias_ih``'s ``f`` block (``bias_hh`` is zero).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from ...errors import CheckpointError
from ...io_utils import atomic_write
from ...weights import sha256_of
from .graphdef import GraphDefReader
from .network import FORGET_BIAS, DeepSpeechNet, DeepSpeechSizes

DENSE = {"fc1": ("h1", "b1"), "fc2": ("h2", "b2"), "fc3": ("h3", "b3"), "fc5": ("h5", "b5"), "fc6": ("h6", "b6")}
LSTM_SCOPE = "bidirectional_rnn/{direction}/basic_lstm_cell/"
LSTM_NAMES = (("kernel", "bias"), ("weights", "biases"))  # TF >= 1.2 (v0.1.0), TF <= 1.1
DIRECTIONS = {"fw": "", "bw": "_reverse"}
TF_TO_TORCH_GATES = (0, 2, 1, 3)  # torch block k (i, f, g, o) <- TF block (i, j, f, o)
FORMAT = "talkingface-deepspeech"


def _torch_view(array: np.ndarray) -> torch.Tensor:
    """A float32 tensor sharing memory with ``array`` (read-only map views included; never written)."""
    if array.dtype != np.float32:
        array = array.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the given NumPy array is not writable"
        return torch.from_numpy(array)


def lstm_from_tf(kernel: torch.Tensor, bias: torch.Tensor, forget_bias: float = FORGET_BIAS,
                 suffix: str = "") -> dict[str, torch.Tensor]:
    """``nn.LSTM`` tensors (keys ``weight_ih_l0{suffix}`` ...) of a BasicLSTMCell's kernel and bias."""
    hidden = kernel.shape[1] // 4
    inputs = kernel.shape[0] - hidden
    weight_ih = torch.empty(4 * hidden, inputs)
    weight_hh = torch.empty(4 * hidden, hidden)
    bias_ih = torch.empty(4 * hidden)
    for block, tf_block in enumerate(TF_TO_TORCH_GATES):
        rows, cols = slice(block * hidden, (block + 1) * hidden), slice(tf_block * hidden, (tf_block + 1) * hidden)
        weight_ih[rows] = kernel[:inputs, cols].t()
        weight_hh[rows] = kernel[inputs:, cols].t()
        bias_ih[rows] = bias[cols]
    bias_ih[hidden:2 * hidden] += forget_bias  # torch block 1 is the forget gate
    return {f"weight_ih_l0{suffix}": weight_ih, f"weight_hh_l0{suffix}": weight_hh,
            f"bias_ih_l0{suffix}": bias_ih, f"bias_hh_l0{suffix}": torch.zeros(4 * hidden)}


def _find_prefix(consts: set[str]) -> str:
    """``""`` for the released graph; ``"scope/"`` when every weight sits under one name scope."""
    if "h1" in consts:
        return ""
    prefixes = [name[:-2] for name in consts if name.endswith("/h1")]
    return prefixes[0] if len(prefixes) == 1 else ""


def _graph_names(reader: GraphDefReader) -> dict[str, str]:
    """``{our role: node name}`` for every weight; CheckpointError listing what is missing."""
    consts = reader.const_names()
    present = set(consts)
    prefix = _find_prefix(present)
    names, missing = {}, []
    for layer, (weight, bias) in DENSE.items():
        for role, name in ((f"{layer}.weight", weight), (f"{layer}.bias", bias)):
            if prefix + name in present:
                names[role] = prefix + name
            else:
                missing.append(prefix + name)
    for direction in DIRECTIONS:
        scope = prefix + LSTM_SCOPE.format(direction=direction)
        found = next((pair for pair in LSTM_NAMES if all(scope + n in present for n in pair)), None)
        if found is None:
            missing.append(f"{scope}{{kernel,bias}} (or {{weights,biases}})")
        else:
            names[f"{direction}.kernel"], names[f"{direction}.bias"] = scope + found[0], scope + found[1]
    if missing:
        shown = ", ".join(consts[:12]) + (f", ... ({len(consts)} in all)" if len(consts) > 12 else "")
        raise CheckpointError(f"{reader.path} is not a DeepSpeech v0.1.0 graph: missing Const nodes "
                              f"{', '.join(missing)}; its Const nodes are: {shown or 'none'}")
    return names


def _sizes_from_graph(shapes: dict[str, tuple[int, ...]], path: Path) -> DeepSpeechSizes:
    """Sizes read from the TF shapes, each checked against the next layer; CheckpointError otherwise."""
    try:
        n_input, n1 = shapes["fc1.weight"]
        n_cell = shapes["fw.kernel"][1] // 4
        sizes = DeepSpeechSizes(n_input=n_input, n_hidden_1=n1, n_hidden_2=shapes["fc2.weight"][1],
                                n_hidden_3=shapes["fc3.weight"][1], n_cell=n_cell,
                                n_hidden_5=shapes["fc5.weight"][1], n_classes=shapes["fc6.weight"][1])
    except (ValueError, IndexError) as exc:
        raise CheckpointError(f"{path}: DeepSpeech weights of unexpected rank: {shapes}") from exc
    lstm_in = sizes.n_hidden_3 + sizes.n_cell
    expected = {"fc1.weight": (n_input, n1), "fc1.bias": (n1,),
                "fc2.weight": (n1, sizes.n_hidden_2), "fc2.bias": (sizes.n_hidden_2,),
                "fc3.weight": (sizes.n_hidden_2, sizes.n_hidden_3), "fc3.bias": (sizes.n_hidden_3,),
                "fw.kernel": (lstm_in, 4 * n_cell), "fw.bias": (4 * n_cell,),
                "bw.kernel": (lstm_in, 4 * n_cell), "bw.bias": (4 * n_cell,),
                "fc5.weight": (2 * n_cell, sizes.n_hidden_5), "fc5.bias": (sizes.n_hidden_5,),
                "fc6.weight": (sizes.n_hidden_5, sizes.n_classes), "fc6.bias": (sizes.n_classes,)}
    wrong = [f"{role} {shapes[role]} (expected {shape})" for role, shape in expected.items() if shapes[role] != shape]
    if wrong:
        raise CheckpointError(f"{path}: DeepSpeech weights with inconsistent shapes: {'; '.join(wrong)}")
    return sizes


def read_graph(path: str | Path) -> tuple[dict[str, torch.Tensor], DeepSpeechSizes]:
    """``DeepSpeechNet`` state dict and sizes from a frozen DeepSpeech graph (``output_graph.pb``).

    Each weight is copied once, straight from the memory-mapped file into its PyTorch layout.
    """
    path = Path(path)
    with GraphDefReader(path) as reader:
        names = _graph_names(reader)
        shapes = {role: reader.tensor_info(name).shape for role, name in names.items()}
        sizes = _sizes_from_graph(shapes, path)
        state: dict[str, torch.Tensor] = {}
        for layer in DENSE:
            state[f"{layer}.weight"] = _torch_view(reader.tensor(names[f"{layer}.weight"])).t().contiguous()
            state[f"{layer}.bias"] = _torch_view(reader.tensor(names[f"{layer}.bias"])).clone()
        for direction, suffix in DIRECTIONS.items():
            kernel = _torch_view(reader.tensor(names[f"{direction}.kernel"]))
            bias = _torch_view(reader.tensor(names[f"{direction}.bias"]))
            state.update({f"lstm.{key}": value for key, value in lstm_from_tf(kernel, bias, suffix=suffix).items()})
            del kernel, bias
    return state, sizes


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], DeepSpeechSizes, dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path} as safetensors: {exc}") from exc
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not converted DeepSpeech weights (metadata format "
                              f"{metadata.get('format')!r}, expected {FORMAT!r}); convert output_graph.pb with "
                              f"`talkingface convert-deepspeech`")
    state = {key: value.float() for key, value in state.items()}
    return state, DeepSpeechSizes.from_state_dict(state, str(path)), metadata


def is_graph_file(path: Path) -> bool:
    """``.pb`` files are frozen graphs; anything else is taken for our safetensors (sniffed, not trusted)."""
    if path.suffix.lower() == ".pb":
        return True
    if path.suffix.lower() == ".safetensors":
        return False
    with open(path, "rb") as handle:
        head = handle.read(9)
    return not (len(head) == 9 and head[8:9] == b"{")  # safetensors: u64 header length, then JSON


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], DeepSpeechSizes]:
    """State dict and sizes from either ``output_graph.pb`` or a converted ``.safetensors``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"DeepSpeech weights not found: {path}")
    if is_graph_file(path):
        return read_graph(path)
    state, sizes, _ = _read_safetensors(path)
    return state, sizes


def build_network(path: str | Path, device: str | torch.device = "cpu") -> DeepSpeechNet:
    """``DeepSpeechNet`` in eval mode on ``device`` with the weights of ``path`` (.pb or .safetensors)."""
    state, sizes = load_weights(path)
    with torch.device("meta"):
        network = DeepSpeechNet(sizes)
    network.load_state_dict(state, strict=True, assign=True)
    return network.to(device).eval()


def convert_graph(graph: str | Path, output: str | Path) -> Path:
    """Write ``graph``'s weights to ``output`` (safetensors with sizes and the source's SHA-256), atomically."""
    from safetensors.torch import save_file

    graph, output = Path(graph), Path(output)
    if not graph.is_file():
        raise CheckpointError(f"DeepSpeech graph not found: {graph} (get output_graph.pb from DeepSpeech v0.1.0; "
                              f"see docs/deepspeech.md)")
    state, sizes = read_graph(graph)
    metadata = {"format": FORMAT, "deepspeech_version": "0.1.0", "sizes": json.dumps(sizes.as_dict()),
                "forget_bias": f"{FORGET_BIAS} (folded into lstm.bias_ih)", "source_name": graph.name,
                "source_sha256": sha256_of(graph), "source_bytes": str(graph.stat().st_size)}
    return atomic_write(output, lambda tmp: save_file(state, str(tmp), metadata=metadata))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a converted file (sizes, source SHA-256, ...)."""
    return _read_safetensors(Path(path))[2]
