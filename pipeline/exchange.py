"""A hash-partitioned exchange between Ray tasks: the shuffle of MapReduce, without a driver in
the data path.

Data lives in the object store as `Parts`: `parts[p]` is the list of Arrow tables (object refs)
that make up partition `p`. A step runs one Ray task per input partition; the task concatenates
its pieces (one table per input), calls a function, and splits each table the function returns
by its `_p` column into the next step's partitions. The driver only passes references, so no
step gathers the data into one process, and a task holds one partition: memory per worker is
bounded by the partition count, which the caller sets from the corpus size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

Parts = list[list]  # partition -> object refs of the tables that make it up
PART = "_p"
_M64 = (np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))


def fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer: a bijection of uint64 that spreads every input bit."""
    x = x ^ (x >> np.uint64(33))
    x = x * _M64[0]
    x = x ^ (x >> np.uint64(33))
    x = x * _M64[1]
    return x ^ (x >> np.uint64(33))


def split_by_partition(table: pa.Table, partitions: int) -> list[pa.Table]:
    """Split a table with a `_p` column into `partitions` tables (without the column)."""
    part = table[PART].to_numpy()
    body = table.drop_columns([PART])
    if partitions == 1:
        return [body]
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(partitions + 1))
    body = body.take(pa.array(order)) if len(order) else body
    return [body.slice(bounds[p], bounds[p + 1] - bounds[p]) for p in range(partitions)]


def _run(fn: Callable, args: tuple, counts: list[int], splits: list[int | None], *pieces):
    inputs, i = [], 0
    for n in counts:
        group = [t for t in pieces[i: i + n] if t is not None]
        inputs.append(pa.concat_tables(group) if group else None)
        i += n
    outputs = fn(*inputs, *args)
    if not isinstance(outputs, tuple):
        outputs = (outputs,)
    result = []
    for table, parts in zip(outputs, splits):
        result += [table] if parts is None else split_by_partition(table, parts)
    return result[0] if len(result) == 1 else result


_REMOTE = []


def _remote_run():
    import ray

    if not _REMOTE:
        _REMOTE.append(ray.remote(_run))
    return _REMOTE[0]


def partition_of(keys: np.ndarray, partitions: int) -> np.ndarray:
    """The partition of each 64-bit key (mixed first, so structured keys spread evenly)."""
    return (fmix64(keys.astype(np.uint64, copy=False)) % np.uint64(partitions)).astype(np.int32)


def step(fn: Callable, inputs: Sequence[Parts], splits: Sequence[int | None], args: tuple = (),
         task_args: Sequence[tuple] | None = None, max_in_flight: int | None = None) -> list:
    """Run `fn(*tables, *args, *task_args[p])` once per partition `p` of the co-partitioned
    `inputs` (or once per entry of `task_args` when there are no inputs).

    `fn` returns one table per entry of `splits` (a tuple when there are several): a table with a
    `_p` column is split into `splits[k]` partitions; with `None` it is one output per task.
    Returns, per output, its `Parts` (or, for `None`, the list of one ref per task).
    `max_in_flight` caps the tasks running at once (then the call returns when all but that many
    have finished).
    """
    import ray

    remote = _remote_run()
    n = len(inputs[0]) if inputs else len(task_args or [])
    if any(len(parts) != n for parts in inputs) or (task_args is not None and len(task_args) != n):
        raise ValueError("inputs of one step must have the same number of partitions")
    width = sum(1 if s is None else s for s in splits)
    outs: list = [[[] for _ in range(s)] if s is not None else [] for s in splits]
    running: list = []
    for p in range(n):
        if max_in_flight and len(running) >= max_in_flight:
            _, running = ray.wait(running, num_returns=len(running) - max_in_flight + 1)
        pieces = [ref for parts in inputs for ref in parts[p]]
        counts = [len(parts[p]) for parts in inputs]
        call_args = tuple(args) + (tuple(task_args[p]) if task_args is not None else ())
        refs = remote.options(num_returns=width, name=fn.__name__.lstrip("_")).remote(
            fn, call_args, counts, list(splits), *pieces)
        refs = [refs] if width == 1 else refs
        running.append(refs[0])
        k = 0
        for o, s in enumerate(splits):
            if s is None:
                outs[o].append(refs[k])
                k += 1
            else:
                for q in range(s):
                    outs[o][q].append(refs[k])
                    k += 1
    return outs


def from_blocks(refs: list) -> Parts:
    """Blocks of a Ray dataset as the input of a first step: one partition per block."""
    return [[ref] for ref in refs]
