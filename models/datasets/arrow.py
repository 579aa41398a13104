"""Arrow IPC streams (the data files of a ``Dataset.save_to_disk`` directory), read as untrusted
input: whole, from bytes already read within the limits, and only when no record batch is
compressed. ``save_to_disk`` never compresses; a compressed batch names its decompressed size
itself, which pyarrow would allocate before checking it, so such a file is refused unread.

The check reads one field of each message's metadata, a FlatBuffer (arrow/format/Message.fbs:
``Message.header`` is a ``RecordBatch`` or a ``DictionaryBatch`` whose ``data`` is one; a
``RecordBatch`` with a ``compression`` field is compressed)."""

from __future__ import annotations

import struct
from typing import Any

RECORD_BATCH, DICTIONARY_BATCH = 3, 2  # MessageHeader union tags
MESSAGE_HEADER_TYPE, MESSAGE_HEADER = 1, 2  # Message's field indices
DICTIONARY_DATA, RECORD_BATCH_COMPRESSION = 1, 3


def _field(buf: bytes, table: int, index: int) -> int | None:
    """Where field ``index`` of the FlatBuffer table at ``table`` is; None when absent."""
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    vtable_size = struct.unpack_from("<H", buf, vtable)[0]
    if 4 + 2 * index >= vtable_size:
        return None
    offset = struct.unpack_from("<H", buf, vtable + 4 + 2 * index)[0]
    return table + offset if offset else None


def _table(buf: bytes, at: int) -> int:
    """The table an offset field at ``at`` points to."""
    return at + int(struct.unpack_from("<I", buf, at)[0])


def is_compressed(metadata: bytes) -> bool:
    """Whether the message whose metadata this is carries a compressed record batch."""
    root = _table(metadata, 0)
    kind_at, header_at = (
        _field(metadata, root, MESSAGE_HEADER_TYPE),
        _field(metadata, root, MESSAGE_HEADER),
    )
    if kind_at is None or header_at is None:
        return False
    kind, header = metadata[kind_at], _table(metadata, header_at)
    if kind == DICTIONARY_BATCH:
        data_at = _field(metadata, header, DICTIONARY_DATA)
        if data_at is None:
            return False
        kind, header = RECORD_BATCH, _table(metadata, data_at)
    return kind == RECORD_BATCH and _field(metadata, header, RECORD_BATCH_COMPRESSION) is not None


def read_stream(data: bytes) -> Any:
    """The ``pyarrow.Table`` in an Arrow IPC stream; ValueError when a batch is compressed (and
    whatever pyarrow, struct or an index raises on malformed bytes)."""
    import pyarrow as pa

    buffer = pa.py_buffer(data)
    messages = pa.ipc.MessageReader.open_stream(pa.BufferReader(buffer))
    while True:
        try:
            message = messages.read_next_message()
        except StopIteration:
            break
        if is_compressed(message.metadata.to_pybytes()):
            raise ValueError("a compressed record batch (save_to_disk never writes one)")
    return pa.ipc.open_stream(buffer).read_all()
