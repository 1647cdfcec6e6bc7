"""Run a child command so that it never outlives the process that started it, and restore a file if it does.

``pipelines.retrain`` runs ``dvc repro`` as a child. Killed (even with SIGKILL), the retrain process cannot
clean up after itself, and DVC and its stage would go on writing ``data/`` after the retrain lock is
released. So the child runs in its own process group, and a small watchdog process (this module's
``__main__``) waits for the parent to die: then it ends the child's whole group (SIGTERM, then SIGKILL) and
puts back the files the parent asked it to restore (``params.yaml`` with the old as-of date).

    with supervised(cmd, log, restore={Path("params.yaml"): backup}) as proc: ...
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

log = logging.getLogger("pipelines.supervise")
GRACE_SECONDS = 10.0
POLL_SECONDS = 0.5



def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_group(pgid: int, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM the process group, wait up to ``grace`` seconds, then SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _group_alive(pgid):
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def restore_files(restore: dict[str, str]) -> None:
    """Put each backup back in place atomically (``target -> backup`` paths)."""
    for target, backup in restore.items():
        if Path(backup).is_file():
            os.replace(backup, target)


@contextlib.contextmanager
def supervised(cmd: list[str], out: IO[str], env: dict[str, str] | None = None,
               restore: dict[Path, Path] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``cmd`` in its own process group, watched: if this process dies, the group is ended and the
    ``restore`` backups are put back. Leaving the block normally or by an exception ends the group too."""
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    spec = json.dumps({"parent": os.getpid(), "pgid": proc.pid,
                       "restore": {str(k): str(v) for k, v in (restore or {}).items()}})
    watchdog = subprocess.Popen([sys.executable, "-m", "pipelines.supervise", spec], start_new_session=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None or _group_alive(proc.pid):
            end_group(proc.pid)
        proc.wait()
        watchdog.terminate()
        watchdog.wait()


def watch(parent: int, pgid: int, restore: dict[str, str]) -> int:
    """The watchdog loop: return when the child's group is gone; if the parent dies first, end the group and
    restore the files."""
    while True:
        if not _group_alive(pgid):
            return 0
        if os.getppid() != parent:  # re-parented: the parent died without cleaning up
            end_group(pgid)
            restore_files(restore)
            return 1
        time.sleep(POLL_SECONDS)


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the parent ends the watchdog when all went well
    return watch(int(spec["parent"]), int(spec["pgid"]), dict(spec["restore"]))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
