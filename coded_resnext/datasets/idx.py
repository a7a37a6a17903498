"""Reader for IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed.

Why not torchvision's ``read_image_file`` / ``read_label_file``: they take only an uncompressed path (the
``.gz`` files of Debian's ``dataset-fashion-mnist`` would need decompressing into a writable cache dir),
and they read with ``strict=False`` and validate with ``assert``, so a truncated file surfaces as an
opaque reshape error or, under ``python -O``, not at all. This reader decompresses in memory and checks
the header and the exact data length, so a bad file is a one-line ``DataError``.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from coded_resnext.datasets.spec import DataError, one_line

# IDX type byte -> big-endian numpy dtype
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in an IDX file, in native byte order; ``DataError`` if the file is unreadable or corrupt."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read IDX file {path}: {one_line(exc)} (corrupt or truncated; fetch it again)") from exc
    if len(raw) < 4 or raw[0:2] != b"\x00\x00" or raw[2] not in _DTYPES or raw[3] < 1:
        raise DataError(f"{path} is not an IDX file (bad header; corrupt or wrong file)")
    ndim, dtype = raw[3], np.dtype(_DTYPES[raw[2]])
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: the IDX header ends early (fetch the file again)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path} is corrupt or truncated: header says shape {shape} ({expected} bytes) "
            f"but {len(raw) - header} data bytes follow (fetch the file again)"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
