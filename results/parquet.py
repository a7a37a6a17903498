"""Run tables as partitioned Parquet datasets (``pyarrow.dataset``, hive layout by experiment) that grow
by appending: a re-run writes only the rows of runs the dataset does not hold yet, so rows are never
duplicated, and reading gives the written frame back with its pandas dtypes (the pandas metadata that
``pyarrow`` stores with every file is merged over all files, so columns added later keep theirs too).

    out/runs/experiment_id=3/part-<time>-0.parquet      (one file per write and partition)

Every row also carries ``__results_write`` and ``__results_row`` (its write's timestamp and its position in
that write), from which ``read_parquet`` restores the order across partitions and then drops them; readers
that open the files directly can sort by them too.

Appends from two processes at the same moment are not coordinated; run one report per dataset at a time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from coded_resnext.results.errors import ResultsError

ORDER_KEY = b"results.columns"
# Row order across partitions: a write's files land in different partition directories, so file names
# alone cannot restore the frame's order; every row carries (write stamp, position) and reading sorts by it.
SEQUENCE = ("__results_write", "__results_row")


@dataclass(frozen=True)
class ParquetWrite:
    path: Path  # the dataset directory
    rows_written: int
    rows_skipped: int  # rows of runs the dataset already held


def _dataset(path: Path, partition_by: Sequence[str] = ()) -> ds.Dataset:
    return ds.dataset(path, format="parquet", partitioning="hive" if partition_by or _has_partitions(path) else None)


def _has_partitions(path: Path) -> bool:
    return any(p.is_dir() and "=" in p.name for p in path.iterdir())


def existing_keys(path: Path, key: str) -> set[str]:
    """The ``key`` values already in the dataset at ``path`` (empty when there is none)."""
    if not path.exists() or not any(path.rglob("*.parquet")):
        return set()
    table = _dataset(path).to_table(columns=[key])
    return {str(v) for v in table.column(key).to_pylist()}


def write_parquet(
    frame: pd.DataFrame,
    out_dir: Path,
    name: str = "runs",
    *,
    key: str = "run_id",
    partition_by: Sequence[str] = ("experiment_id",),
) -> ParquetWrite:
    """Append the rows of ``frame`` whose ``key`` is new to the dataset ``out_dir/name``.

    ``partition_by`` columns that the frame has become hive partitions; ``key`` identifies a run, so a
    run's rows are written together once (long tables: all rows of one run share its ``run_id``).
    """
    path = Path(out_dir) / name
    if key not in frame.columns:
        raise ResultsError(f"cannot write {name}: the frame has no {key!r} column")
    seen = existing_keys(path, key)
    fresh = frame[~frame[key].astype(str).isin(seen)] if seen else frame
    skipped = len(frame) - len(fresh)
    if fresh.empty:
        return ParquetWrite(path, 0, skipped)
    partitions = [c for c in partition_by if c in fresh.columns]
    if seen and partitions and not _has_partitions(path):
        partitions = []  # keep the layout the dataset was started with
    stamp = time.time_ns()
    table = pa.Table.from_pandas(fresh, preserve_index=False)
    table = table.append_column(SEQUENCE[0], pa.array([stamp] * len(fresh), pa.int64()))
    table = table.append_column(SEQUENCE[1], pa.array(range(len(fresh)), pa.int64()))
    metadata = {**(table.schema.metadata or {}), ORDER_KEY: json.dumps(list(fresh.columns)).encode()}
    table = table.replace_schema_metadata(metadata)
    path.mkdir(parents=True, exist_ok=True)
    ds.write_dataset(
        table,
        path,
        format="parquet",
        partitioning=partitions or None,
        partitioning_flavor="hive" if partitions else None,
        basename_template=f"part-{stamp:020d}-{{i}}.parquet",
        existing_data_behavior="overwrite_or_ignore",
    )
    return ParquetWrite(path, len(fresh), skipped)


def _merged_metadata(schemas: list[pa.Schema]) -> dict[bytes, bytes]:
    """Pandas metadata covering the columns of every file (later files win), and the latest column order."""
    columns: dict[str, dict] = {}
    pandas_meta: dict = {}
    order: list[str] = []
    for schema in schemas:
        meta = schema.metadata or {}
        if b"pandas" in meta:
            pandas_meta = json.loads(meta[b"pandas"])
            columns.update({c["name"]: c for c in pandas_meta.get("columns", [])})
        if ORDER_KEY in meta:
            order = [*json.loads(meta[ORDER_KEY]), *[c for c in order if c not in json.loads(meta[ORDER_KEY])]]
    if not pandas_meta:
        return {}
    pandas_meta["columns"] = list(columns.values())
    return {b"pandas": json.dumps(pandas_meta).encode(), ORDER_KEY: json.dumps(order).encode()}


def read_parquet(out_dir: Path, name: str = "runs") -> pd.DataFrame:
    """The whole dataset ``out_dir/name`` as one frame, in write order, with the written dtypes."""
    path = Path(out_dir) / name
    if not path.exists() or not any(path.rglob("*.parquet")):
        raise ResultsError(f"no Parquet dataset at {path}")
    discovered = _dataset(path)
    fragments = sorted(discovered.get_fragments(), key=lambda f: Path(f.path).name)
    schemas = [f.physical_schema for f in fragments]
    partition_fields = [f for f in discovered.partitioning.schema] if discovered.partitioning else []
    string_parts = pa.schema([pa.field(f.name, pa.string()) for f in partition_fields])
    unified = pa.unify_schemas([*schemas, string_parts], promote_options="permissive")
    unified = unified.with_metadata(_merged_metadata(schemas))
    partitioning = ds.partitioning(string_parts, flavor="hive") if partition_fields else None
    dataset = ds.dataset(
        [f.path for f in fragments],
        schema=unified,
        format="parquet",
        partitioning=partitioning,
        partition_base_dir=str(path),
    )
    frame = dataset.to_table().to_pandas()
    if all(c in frame.columns for c in SEQUENCE):
        frame = frame.sort_values(list(SEQUENCE), kind="stable", na_position="first").reset_index(drop=True)
        frame = frame.drop(columns=list(SEQUENCE))
    order = json.loads(unified.metadata.get(ORDER_KEY, b"[]")) if unified.metadata else []
    order = [c for c in order if c in frame.columns] + [c for c in frame.columns if c not in order]
    return frame[order]
