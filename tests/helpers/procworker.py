"""A worker in a process of its own, to be killed with SIGKILL by a reliability test.

``python -m helpers.procworker SETTINGS_PICKLE LOG_FILE LOOPS`` (cwd ``tests/``) runs the local
runtime's default-lane receive loops (``LocalRuntime.start_workers``, as ``dynacron local``
does) against the deployment the pickled ``Settings`` describe, until stdin closes. Its handler
``rel-proc`` appends ``enter``/``leave`` lines (epoch ms, run key, pid) to LOG_FILE, so a test
counts handlers running at once across processes; a payload ``{"hang": true}`` makes the first
attempt block until the process is killed (a worker dying mid-run, slot and all).
"""

from __future__ import annotations

import copy
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any

from dynacron import handler

LOG: Path | None = None


def _note(kind: str, ctx: Any) -> None:
    assert LOG is not None
    key = f"{ctx.task_id}/{ctx.run_id}/{ctx.attempt}"
    line = f"{kind} {int(time.time() * 1000)} {key} {os.getpid()}\n"
    # one short O_APPEND write per line: lines of several processes never interleave
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@handler("rel-proc")
def _proc(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    _note("enter", ctx)
    if payload.get("hang") and ctx.attempt == 1:
        while True:  # until SIGKILL: no leave line, no release, no ack
            time.sleep(1)
    time.sleep(float(payload.get("sleep_s", 0.3)))
    _note("leave", ctx)
    return {"pid": os.getpid()}


def default_lane_only(template: dict[str, Any]) -> dict[str, Any]:
    """The template with the worker's lane event sources removed: only WorkQueue's loops run."""
    from dynacron.local.provision import event_sources

    out = copy.deepcopy(template)
    for name, props in event_sources(out).items():
        if props["EventSourceArn"]["Fn::GetAtt"][0] != "WorkQueue":
            del out["Resources"][name]
    return out


def main(settings_path: str, log_path: str, loops: int) -> None:
    global LOG
    from dynacron.aws import sqs_client
    from dynacron.clock import SystemClock
    from dynacron.execute import Executor
    from dynacron.local.provision import find_template, load_template
    from dynacron.local.runtime import LocalRuntime
    from dynacron.store import Store

    LOG = Path(log_path)
    settings = pickle.loads(Path(settings_path).read_bytes())
    rt = LocalRuntime(workers=loops, receive_wait_s=0)
    executor = Executor(Store(settings), sqs_client(settings), settings, clock=SystemClock(),
                        concurrency_wait_s=1, rand=lambda: 0.0)
    rt.start_workers(settings, sqs_client(settings), executor,
                     default_lane_only(load_template(find_template())))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.read()  # the test closes stdin to stop us (or kills us)
    rt.stop(grace_s=5)
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
