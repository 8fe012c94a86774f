"""Budgets counted in CPU time of one thread, so a verdict does not change with how busy the machine is.

A limit counted on the wall clock rejects good records on a loaded machine: at a load of 8 on 2 cores a render
that needs 1 s of work takes 4 s, and a process paused by the scheduler (or by SIGSTOP, a laptop going to sleep, a
debugger) sees its renders "run" for as long as the pause. What a template does is work, so the render limit, the
compile limit and the per-record limit count the CPU time of the thread doing it (``CLOCK_THREAD_CPUTIME_ID``):
the same input gives the same report whatever else the machine does.

A thread can also be stuck without using the CPU (waiting on a lock forever): for that each budget keeps a wall-clock
backstop, ``backstop(limit)`` = 10 times the limit and at least 60 s, far past anything a busy machine stretches a
render to.

Reading a thread's CPU clock is a system call (about 1.6 us, against 0.1 us for ``time.monotonic``), too slow for
the checks a render makes on every attribute it reads. ``CpuBudget.end`` is therefore a wall-clock time before which
the budget cannot be spent, because a thread gains at most one second of CPU time per second: the hot path compares
``time.monotonic()`` with ``end`` and only past it reads the CPU clock (``expired``), which either says the budget is
spent or moves ``end`` on by the CPU time still left.

Example: b = CpuBudget(0.5) in a thread that then sleeps 2 s: b.expired() is False (no CPU used, 2 s < backstop of
60 s), b.end has moved 0.5 s past now; after 0.6 s of computing, b.expired() is True.
"""

from __future__ import annotations

import threading
import time

BACKSTOP_FACTOR = 10  # the wall-clock backstop is this many times the limit ...
BACKSTOP_MIN = 60.0  # ... and at least this many seconds


def backstop(limit: float) -> float:
    """Wall-clock seconds after which a budget of ``limit`` CPU seconds is spent anyway (a thread stuck outside the
    CPU). Example: backstop(0.5) -> 60.0; backstop(30) -> 300.0."""
    return max(BACKSTOP_FACTOR * limit, BACKSTOP_MIN)


def thread_clock() -> int | None:
    """The CPU clock id of the calling thread, or None where the platform has none (then budgets count wall time)."""
    try:
        return time.pthread_getcpuclockid(threading.get_ident())
    except (AttributeError, OSError):
        return None


def clock_seconds(clock: int | None) -> float | None:
    """CPU seconds of ``clock`` (from ``thread_clock``), None when it cannot be read (the thread has ended)."""
    if clock is None:
        return None
    try:
        return time.clock_gettime(clock)
    except OSError:
        return None


class CpuBudget:
    """``limit`` seconds of CPU time of the thread that creates it, with a wall-clock backstop (``backstop``).

    ``end``: a wall-clock (``time.monotonic``) time before which the budget cannot be spent; ``expired()`` reads the
    CPU clock (from any thread: the watchdog reads it too) and moves ``end`` on when time is left. ``used()``: CPU
    seconds spent so far.
    """

    __slots__ = ("limit", "clock", "cpu_start", "cpu_end", "wall_end", "end")

    def __init__(self, limit: float):
        self.limit = limit
        self.clock = thread_clock()
        now = time.monotonic()
        start = clock_seconds(self.clock)
        if start is None:  # no CPU clock: the wall clock it is
            self.clock = None
            start = now
        self.cpu_start = start
        self.cpu_end = start + limit
        self.wall_end = now + backstop(limit)
        self.end = min(now + limit, self.wall_end)

    def used(self) -> float:
        """CPU seconds used since the budget started (wall seconds where there is no CPU clock)."""
        cpu = clock_seconds(self.clock)
        return (cpu if cpu is not None else time.monotonic()) - self.cpu_start

    def expired(self) -> bool:
        """True once the thread has used ``limit`` CPU seconds, or the backstop has passed; else moves ``end`` to the
        earliest wall time at which the rest could be used up."""
        now = time.monotonic()
        if now >= self.wall_end:
            return True
        cpu = clock_seconds(self.clock)
        if cpu is None:
            cpu = now if self.clock is None else self.cpu_end  # a CPU clock that can no longer be read: spent
        left = self.cpu_end - cpu
        if left <= 0:
            return True
        self.end = min(now + left, self.wall_end)
        return False
