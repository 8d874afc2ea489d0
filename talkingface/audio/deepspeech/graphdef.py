"""A reader of frozen TensorFlow GraphDef files (``*.pb``) built on the protobuf wire format alone.

Only what a frozen graph's weights need is decoded: ``GraphDef.node`` (field 1) -> ``NodeDef`` name (1),
op (2), input (3) and attr (5, a map of ``AttrValue``); the ``value`` attr of ``Const`` nodes ->
``TensorProto`` dtype (1), tensor_shape (2) and either tensor_content (4) or the typed ``*_val`` fields.
The file is memory-mapped; tensors are returned as read-only numpy views into the map, so reading a
490 MB graph does not copy it.
"""
from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ...errors import CheckpointError

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5

# TensorFlow DataType enum -> numpy dtype (little-endian, as tensor_content stores it)
DTYPES = {1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"), 4: np.dtype("u1"), 5: np.dtype("<i2"),
          6: np.dtype("i1"), 9: np.dtype("<i8"), 10: np.dtype("?"), 19: np.dtype("<f2")}
# TensorProto field holding the values of each dtype when tensor_content is absent
VALUE_FIELDS = {1: 5, 2: 6, 3: 7, 4: 7, 5: 7, 6: 7, 9: 10, 10: 11, 19: 13}


class WireError(ValueError):
    """Bytes that are not a well-formed protobuf message (truncated, or not protobuf at all)."""


Span = tuple[int, int]


def read_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    """The base-128 varint at ``pos`` and the position after it."""
    result = shift = 0
    while True:
        if pos >= end:
            raise WireError(f"a varint runs past the end of its message at byte {pos}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError(f"a varint longer than 10 bytes ends at byte {pos}")


def iter_fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int | Span]]:
    """``(field number, wire type, value)`` of the message in ``buf[start:end]``.

    ``value`` is an int for varint and fixed-width fields, the ``(start, stop)`` span of the payload for
    length-delimited ones (sub-messages, strings, bytes, packed arrays).
    """
    pos = start
    while pos < end:
        at = pos
        key, pos = read_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError(f"field number 0 at byte {at}")
        value: int | Span
        if wire == VARINT:
            value, pos = read_varint(buf, pos, end)
        elif wire == LENGTH:
            length, pos = read_varint(buf, pos, end)
            if pos + length > end:
                raise WireError(f"field {number} at byte {at} declares {length} bytes but its message ends "
                                f"{end - pos} bytes later")
            value, pos = (pos, pos + length), pos + length
        elif wire in (FIXED64, FIXED32):
            width = 8 if wire == FIXED64 else 4
            if pos + width > end:
                raise WireError(f"a {8 * width}-bit field at byte {at} runs past the end of its message")
            value, pos = int.from_bytes(buf[pos:pos + width], "little"), pos + width
        else:
            raise WireError(f"unsupported wire type {wire} (field {number}) at byte {at}")
        yield number, wire, value


def _text(buf: memoryview, span: Span) -> str:
    try:
        return bytes(buf[span[0]:span[1]]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(f"a string at byte {span[0]} is not UTF-8") from exc


def _span(value: int | Span, wire: int, what: str) -> Span:
    if wire != LENGTH or not isinstance(value, tuple):
        raise WireError(f"{what} should be length-delimited, found wire type {wire}")
    return value


@dataclass
class Node:
    """One ``NodeDef``: its name, op, inputs and the raw spans of its attribute values."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict[str, Span] = field(default_factory=dict)


def _parse_node(buf: memoryview, span: Span) -> Node:
    node = Node("", "")
    for number, wire, value in iter_fields(buf, *span):
        if number in (1, 2, 3):
            text = _text(buf, _span(value, wire, "a NodeDef string"))
            if number == 1:
                node.name = text
            elif number == 2:
                node.op = text
            else:
                node.inputs.append(text)
        elif number == 5:  # map<string, AttrValue> entry: key = 1, value = 2
            key, attr = "", None
            for entry_number, entry_wire, entry_value in iter_fields(buf, *_span(value, wire, "a NodeDef attr")):
                if entry_number == 1:
                    key = _text(buf, _span(entry_value, entry_wire, "an attr name"))
                elif entry_number == 2:
                    attr = _span(entry_value, entry_wire, "an AttrValue")
            if attr is not None:
                node.attrs[key] = attr
    return node


@dataclass(frozen=True)
class TensorInfo:
    """A ``TensorProto`` located in the file: dtype enum, shape and where its values are."""

    dtype: int
    shape: tuple[int, ...]
    content: Span | None
    values: list[tuple[int, int | Span]]  # (wire type, value) of the dtype's *_val field


def _parse_shape(buf: memoryview, span: Span) -> tuple[int, ...]:
    dims = []
    for number, wire, value in iter_fields(buf, *span):
        if number == 2:  # Dim: size = 1 (int64), name = 2
            size = 0
            for dim_number, _, dim_value in iter_fields(buf, *_span(value, wire, "a shape dim")):
                if dim_number == 1 and isinstance(dim_value, int):
                    size = dim_value - (1 << 64) if dim_value >= 1 << 63 else dim_value
            dims.append(size)
        elif number == 3 and value:
            raise WireError("a constant of unknown rank")
    if any(d < 0 for d in dims):
        raise WireError(f"a constant with an unknown dimension: {dims}")
    return tuple(dims)


def _parse_tensor(buf: memoryview, span: Span) -> TensorInfo:
    dtype, shape, content = 0, (), None
    fields = list(iter_fields(buf, *span))
    for number, wire, value in fields:
        if number == 1 and isinstance(value, int):
            dtype = value
        elif number == 2:
            shape = _parse_shape(buf, _span(value, wire, "a TensorShapeProto"))
        elif number == 4:
            content = _span(value, wire, "tensor_content")
    wanted = VALUE_FIELDS.get(dtype)
    values = [(wire, value) for number, wire, value in fields if number == wanted]
    return TensorInfo(dtype, shape, content, values)


def _typed_values(buf: memoryview, info: TensorInfo, dtype: np.dtype) -> np.ndarray:
    """The repeated ``*_val`` field as an array (packed or not, in file order)."""
    parts: list[np.ndarray] = []
    for wire, value in info.values:
        if dtype.kind == "f" and dtype.itemsize in (4, 8):  # float_val / double_val: fixed width
            if wire == LENGTH:
                start, stop = value  # type: ignore[misc]
                parts.append(np.frombuffer(buf[start:stop], dtype=dtype))
            else:
                raw = int(value).to_bytes(dtype.itemsize, "little")  # type: ignore[arg-type]
                parts.append(np.frombuffer(raw, dtype=dtype))
        else:  # int_val, int64_val, bool_val, half_val (bits in an int32): varints
            if wire == LENGTH:
                start, stop = value  # type: ignore[misc]
                ints, pos = [], start
                while pos < stop:
                    number, pos = read_varint(buf, pos, stop)
                    ints.append(number)
            else:
                ints = [int(value)]  # type: ignore[arg-type]
            signed = [v - (1 << 64) if v >= 1 << 63 else v for v in ints]
            if info.dtype == 19:
                parts.append(np.array(signed, dtype=np.uint16).view(np.float16))
            else:
                parts.append(np.array(signed, dtype=np.int64).astype(dtype))
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


class GraphDefReader:
    """The nodes of a frozen GraphDef file and the values of its ``Const`` nodes.

    Use as a context manager. Arrays from ``tensor()`` are read-only views into the memory map: copy
    what must outlive the reader. Every parse failure is a ``CheckpointError`` naming the file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as handle:
                size = handle.seek(0, 2)
                if size == 0:
                    raise CheckpointError(f"{self.path} is empty, not a TensorFlow GraphDef (.pb)")
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            raise CheckpointError(f"cannot read {self.path}: {exc}") from exc
        self._buf = memoryview(self._map)
        try:
            self.nodes = self._parse_nodes()
        except WireError as exc:
            self.close()
            raise CheckpointError(f"{self.path} is not a readable TensorFlow GraphDef: {exc} (the file is "
                                  f"{size} bytes; truncated, or not a frozen graph)") from exc
        if not self.nodes:
            self.close()
            raise CheckpointError(f"{self.path} has no graph nodes; it is not a frozen TensorFlow graph (.pb)")
        self._by_name = {node.name: node for node in self.nodes}

    def _parse_nodes(self) -> list[Node]:
        nodes = []
        for number, wire, value in iter_fields(self._buf, 0, len(self._buf)):
            if number == 1:
                node = _parse_node(self._buf, _span(value, wire, "GraphDef.node"))
                if not node.name or not node.op:
                    raise WireError(f"a node without a name or op at byte {_span(value, wire, 'node')[0]}")
                nodes.append(node)
        return nodes

    def __enter__(self) -> "GraphDefReader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the map; views still alive keep it open until they are garbage-collected."""
        try:
            self._buf.release()
            self._map.close()
        except BufferError:  # a returned view is still in use; the map closes when it is collected
            pass

    def const_names(self) -> list[str]:
        """Names of the ``Const`` nodes, in file order."""
        return [node.name for node in self.nodes if node.op == "Const"]

    def node(self, name: str) -> Node | None:
        return self._by_name.get(name)

    def tensor_info(self, name: str) -> TensorInfo:
        node = self._by_name.get(name)
        if node is None or node.op != "Const":
            raise CheckpointError(f"{self.path} has no Const node named {name!r}")
        attr = node.attrs.get("value")
        if attr is None:
            raise CheckpointError(f"{self.path}: Const node {name!r} has no 'value' attribute")
        try:
            for number, wire, value in iter_fields(self._buf, *attr):
                if number == 8:  # AttrValue.tensor
                    return _parse_tensor(self._buf, _span(value, wire, "AttrValue.tensor"))
        except WireError as exc:
            raise CheckpointError(f"{self.path}: Const node {name!r} has a malformed tensor: {exc}") from exc
        raise CheckpointError(f"{self.path}: Const node {name!r} holds no tensor")

    def tensor(self, name: str) -> np.ndarray:
        """The value of Const node ``name``: a read-only view when stored as tensor_content."""
        info = self.tensor_info(name)
        dtype = DTYPES.get(info.dtype)
        if dtype is None:
            raise CheckpointError(f"{self.path}: Const node {name!r} has unsupported dtype enum {info.dtype}")
        count = int(np.prod(info.shape, dtype=np.int64))
        if info.content is not None:
            start, stop = info.content
            if stop - start != count * dtype.itemsize:
                raise CheckpointError(f"{self.path}: Const node {name!r} of shape {info.shape} holds "
                                      f"{stop - start} bytes, expected {count * dtype.itemsize}")
            return np.frombuffer(self._buf[start:stop], dtype=dtype).reshape(info.shape)
        try:
            values = _typed_values(self._buf, info, dtype)
        except WireError as exc:
            raise CheckpointError(f"{self.path}: Const node {name!r} has malformed values: {exc}") from exc
        if len(values) > count:
            raise CheckpointError(f"{self.path}: Const node {name!r} of shape {info.shape} lists {len(values)} "
                                  f"values")
        if len(values) < count:  # TensorFlow repeats the last value (zeros when none is given)
            fill = values[-1] if len(values) else np.zeros((), dtype)
            values = np.concatenate([values, np.full(count - len(values), fill, dtype)])
        return values.reshape(info.shape)

