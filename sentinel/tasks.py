"""Task ownership helpers that never swallow the caller's own cancellation.

`contextlib.suppress(CancelledError)` around `await task` hides a cancel aimed at the
*awaiting* task as well as the one we sent; `cancel_and_wait` tells them apart with
`Task.cancelling()`. (`asyncio.wait_for` on Python 3.11 can also swallow a cancel that
races its inner future; code here uses `asyncio.timeout` instead.) A retry loop calls
`raise_if_cancelling` before it goes round again, since a library may have eaten the cancel.
"""

from __future__ import annotations

import asyncio
import signal


def termination_requested() -> asyncio.Event:
    """An event set on SIGTERM or SIGINT (Ctrl-C); install it before starting anything, so a
    signal that arrives during start-up is not lost."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def cancel_and_wait(*tasks: asyncio.Task[object]) -> None:
    """Cancel `tasks` and wait until they have finished; their errors are not raised."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being cancelled ourselves: let it through
        except Exception:
            pass


def raise_if_cancelling() -> None:
    """Raise CancelledError if a cancel of the running task is pending.

    For retry loops, before they go round again: a library may have turned our cancel into an
    error of its own (nats-py's fetch raises ConnectionClosedError when the connection is
    closed) or swallowed it (nats-py's close), and a loop that retries would then outlive its
    cancellation and hang whoever waits for it (`cancel_and_wait`)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
