"""The month's book read from DuckDB in record batches, so a national book (10 M policies) fits in a few GB.

What stays in memory for the whole run is what the pricing needs at once (one off-balance factor is solved over
the whole book): the numeric columns as NumPy arrays, about 70 bytes a policy. Policy ids stay in Arrow (about
14 bytes a policy instead of ~70 as Python strings) and become Python strings one chunk at a time, when that
chunk's rows are built. DuckDB's own memory is bounded by ``memory_limit`` (``Config.pricing_memory_limit``);
its sort and aggregation spill to disk beyond it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

import numpy as np
import polars as pl
import pyarrow as pa

BATCH_ROWS = 1_000_000
# Rows written per INSERT: whole DuckDB row groups (122,880 rows), so DuckDB writes them straight to the file as
# compressed row groups ("optimistic writes") instead of through the WAL, measured 3x faster per row (15 vs 45 us
# for 1.5 kB rows, encrypted) than 50,000-row inserts; and exactly whole ones, since the checkpoint merges the
# partial row group each INSERT leaves: 15 inserts of 122,880 rows left nothing to checkpoint (0.0 s) where 12
# of 150,000 took a 66 s checkpoint, and a 10 M-row month 231 s and a 16 GB peak (docs/capacity.md).
STAGE_ROWS = 122_880


class ArrowIds(Sequence[str]):
    """A read-only sequence of strings over an Arrow column: ``ids[i]``, ``ids[lo:hi]`` (a list) and iteration in
    chunks, without a Python object per id until asked for."""

    def __init__(self, column: pa.ChunkedArray | pa.Array) -> None:
        self.col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column

    def __len__(self) -> int:
        return len(self.col)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            lo, hi, step = i.indices(len(self.col))
            if step != 1:
                raise ValueError("ArrowIds slices are contiguous")
            return self.col.slice(lo, max(hi - lo, 0)).to_pylist()
        if i < 0:
            i += len(self.col)
        if not 0 <= i < len(self.col):
            raise IndexError(i)
        return self.col[i].as_py()

    def __iter__(self) -> Iterator[str]:
        for lo in range(0, len(self.col), 100_000):
            yield from self.col.slice(lo, 100_000).to_pylist()


def fetch_columns(relation: Any, text: tuple[str, ...] = (), batch_rows: int | None = None) -> dict[str, Any]:
    """A DuckDB relation (``con.sql(...)``) read in record batches: numeric columns as NumPy masked arrays (masked
    where NULL, the shape ``fetchnumpy`` gives), the ``text`` columns as ``ArrowIds``. Each batch is converted and
    dropped before the next is read."""
    reader = relation.to_arrow_reader(batch_rows or BATCH_ROWS)
    parts: dict[str, list] = {name: [] for name in reader.schema.names}
    for batch in reader:
        for name, col in zip(batch.schema.names, batch.columns, strict=True):
            if name in text:
                parts[name].append(col)
            else:
                mask = col.is_null().to_numpy(zero_copy_only=False) if col.null_count else None
                data = (col.fill_null(0) if col.null_count else col).to_numpy(zero_copy_only=False)
                parts[name].append((data, mask))
    out: dict[str, Any] = {}
    for name, chunks in parts.items():
        if name in text:
            out[name] = ArrowIds(pa.chunked_array(chunks, type=reader.schema.field(name).type))
            continue
        dtype = reader.schema.field(name).type.to_pandas_dtype()
        data = np.concatenate([d for d, _ in chunks]) if chunks else np.zeros(0, dtype=dtype)
        mask = np.concatenate([m if m is not None else np.zeros(len(d), bool) for d, m in chunks]) if chunks else None
        out[name] = np.ma.MaskedArray(data, mask=mask if mask is not None and mask.any() else np.ma.nomask)
    return out


def batched(chunks: Iterable[tuple[pl.DataFrame, pl.DataFrame]], rows: int) -> Iterator[tuple[pl.DataFrame, ...]]:
    """(features, premiums) chunks regrouped into batches of a whole multiple of ``rows`` rows (the rest carried
    into the next batch; the last batch holds what remains), in order."""
    held: list[tuple[pl.DataFrame, pl.DataFrame]] = []
    count = 0
    for chunk in chunks:
        held.append(chunk)
        count += chunk[1].height
        if count >= rows:
            f = pl.concat([f for f, _ in held], rechunk=False)
            p = pl.concat([p for _, p in held], rechunk=False)
            cut = count // rows * rows
            yield f.head(cut), p.head(cut)
            count -= cut
            held = [(f.slice(cut), p.slice(cut))] if count else []
    if held:
        yield pl.concat([f for f, _ in held], rechunk=False), pl.concat([p for _, p in held], rechunk=False)
