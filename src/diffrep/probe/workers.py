"""Independent worker threads, one intra-op thread each, for teacher batches and probes on a shared CPU.

torch's intra-op parallelism splits every operation over all cores and waits for the slowest: on the 2 cores of
this project's machines, shared with training jobs, a teacher pass ran at 88 img/s with 2 threads and at 129 img/s
with 1, and a 60k x 512 probe took 4.5 s with 2 threads and 2.3 s with 1. Independent threads never wait for each
other: as fast as one thread on a busy machine, about as fast as all cores on an idle one. Each worker runs its
own copy of the teacher (forward hooks, which early exit registers per call, are per module object), in
channels_last (7.7% faster on this CPU).
"""
from __future__ import annotations

import copy
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Self

import torch

from diffrep.teacher import Teacher


def default_workers(teacher: Teacher | None = None) -> int:
    """torch's thread budget (OMP_NUM_THREADS, torch.set_num_threads) as workers; 1 for a GPU teacher."""
    if teacher is not None and teacher.device.type != "cpu":
        return 1
    return max(1, torch.get_num_threads())


class Workers:
    """`with Workers(n) as pool:` ordered `pool.map(fn, items)` over n threads; n = 1 runs in the caller's thread
    with the caller's threads and teachers, exactly as without workers."""

    def __init__(self, n: int = 1):
        self.n = max(1, int(n))
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> Self:
        if self.n > 1:
            self._threads = torch.get_num_threads()
            self._pool = ThreadPoolExecutor(self.n, initializer=torch.set_num_threads, initargs=(1,))
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
            torch.set_num_threads(self._threads)  # the default of threads started later

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        """fn(item) for every item, in order, with at most 2 n items in flight (bounded memory)."""
        if self._pool is None:
            yield from map(fn, items)
            return
        pending = deque()
        for item in items:
            pending.append(self._pool.submit(fn, item))
            if len(pending) >= 2 * self.n:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def teacher(self, teacher: Teacher) -> Teacher:
        """This thread's copy of `teacher` (channels_last on a CPU) in a worker; the teacher itself when n = 1."""
        if self._pool is None:
            return teacher
        copies = self._local.__dict__.setdefault("teachers", {})
        if id(teacher) not in copies:
            clone = copy.copy(teacher)
            clone.unet = copy.deepcopy(teacher.unet)
            if teacher.device.type == "cpu":
                clone.unet.to(memory_format=torch.channels_last)
            copies[id(teacher)] = (teacher, clone)  # holding teacher keeps its id from being reused
        return copies[id(teacher)][1]
