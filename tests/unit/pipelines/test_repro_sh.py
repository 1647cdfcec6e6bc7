"""``pipelines/repro.sh``, what ``make run`` runs: ``dvc repro --single-item`` steps in dvc.yaml's order, with the
truth (niced), ``register`` and ``export`` each in a second ``dvc repro`` beside the main chain."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]


def _fake_dvc(tmp_path: Path, fail: str = "") -> Path:
    """A ``dvc`` that records each call's start (nice value, session, arguments) and end, and fails the call
    whose last argument is ``fail``. Each call takes a moment (the truth's a second), so calls that overlap
    show it in the log."""
    fake = tmp_path / "dvc"
    fake.write_text(
        "#!/bin/sh\n"
        'last=""; for a in "$@"; do last="$a"; done\n'
        'echo "start $(nice) $("$PY" -c "import os; print(os.getsid(0))") $*" >> "$CALLS"\n'
        'if [ "$last" = truth ]; then sleep 1; else sleep 0.5; fi\n'
        'echo "Running stage \'$last\'"\n'
        'echo "end $*" >> "$CALLS"\n'
        f'if [ "$last" = "{fail}" ]; then echo "stage $last failed" >&2; exit 3; fi\n', encoding="utf-8")
    fake.chmod(0o755)
    return fake


def _run(tmp_path: Path, fail: str = "", *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    calls = tmp_path / "calls.log"
    env = {**os.environ, "DVC": str(_fake_dvc(tmp_path, fail)), "CALLS": str(calls), "PY": sys.executable}
    done = subprocess.run(["sh", "pipelines/repro.sh", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    return done, calls.read_text(encoding="utf-8").splitlines()


def _upstream() -> dict[str, set[str]]:
    """Each dvc.yaml stage's upstream stages: those whose outputs (or metrics) it depends on."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    outs: dict[str, str] = {}
    for name, stage in stages.items():
        for out in [*stage.get("outs", []), *stage.get("metrics", []), *stage.get("plots", [])]:
            outs[out if isinstance(out, str) else next(iter(out))] = name
    def covers(dep: str, out: str) -> bool:
        return dep == out or dep.startswith(out.rstrip("/") + "/") or out.startswith(dep.rstrip("/") + "/")
    return {name: {outs[o] for dep in stage.get("deps", []) for o in outs if covers(dep, o)} - {name}
            for name, stage in stages.items()}


def _stages(call: str) -> list[str]:
    words = call.split()
    return words[words.index("--single-item") + 1:]


def test_every_stage_runs_once_after_its_upstream_with_the_options(tmp_path: Path) -> None:
    done, calls = _run(tmp_path, "", "--force")
    assert done.returncode == 0, done.stderr
    starts = [c for c in calls if c.startswith("start ")]
    ran = [s for c in starts for s in _stages(c)]
    upstream = _upstream()
    assert sorted(ran) == sorted(upstream), "each dvc.yaml stage in exactly one step"
    where = {s: i for i, c in enumerate(starts) for s in _stages(c)}
    for stage, ups in upstream.items():
        call = starts[where[stage]]
        began = calls.index(call)
        for up in ups:
            if where[up] == where[stage]:  # the same step: dvc repro --single-item runs them in the order given
                assert _stages(call).index(up) < _stages(call).index(stage), (up, stage)
            else:  # an earlier step, ended before this one started
                ended = calls.index("end " + starts[where[up]].split(maxsplit=3)[3])
                assert ended < began, f"{stage} started before {up} ended"
    base = int(subprocess.run(["nice"], capture_output=True, text=True, check=True).stdout)
    for c in starts:
        nice, sid, *argv = c.split()[1:]
        assert argv[:3] == ["--wait-for-lock", "repro", "--force"], c
        # one session for all: Linux's autogroups share the CPU equally between sessions, whatever the nice value
        assert sid == str(os.getsid(0))
        assert int(nice) == (min(base + 19, 19) if _stages(c) == ["truth"] else base), c
    # register and truth_check each overlap a step of the chain (the truth's start, niced, may lag on a busy
    # machine: that it is started first and in the background is in the script)
    for side, main in (("register", "uplift"), ("export", "truth_check")):
        side_start = calls.index(starts[where[side]])
        main_end = calls.index("end " + starts[where[main]].split(maxsplit=3)[3])
        assert side_start < main_end, f"{side} did not run beside {main}"
    # each side repro's output is shown as one block once it has ended, not interleaved with the main chain's
    for side in ("truth", "register", "export"):
        block = done.stdout.split(f"---- {side}, run beside the others (exit 0) ----\n")[1]
        assert block.startswith(f"Running stage '{side}'\n----\n")


_BEFORE_UPLIFT = {"truth", "calibrate"}  # the steps started before uplift, segment and register


@pytest.mark.parametrize("fail, ran", [("calibrate", {"truth"}), ("segment", _BEFORE_UPLIFT | {"register"}),
                                       ("register", _BEFORE_UPLIFT | {"segment"}),
                                       ("truth", {"calibrate", "register", "segment", "export"}),
                                       ("export", _BEFORE_UPLIFT | {"register", "segment", "report"}),
                                       ("report", _BEFORE_UPLIFT | {"register", "segment", "export"})])
def test_a_failure_is_the_exit_code_after_the_side_repros_end(tmp_path: Path, fail: str, ran: set[str]) -> None:
    """A step's failure ends the run with its code once whatever runs beside has ended (its log shown); no
    later step starts."""
    done, calls = _run(tmp_path, fail)
    assert done.returncode == 3, done.stderr
    assert f"stage {fail} failed" in done.stdout + done.stderr
    assert "failed (exit 3)" in done.stderr
    lasts = {c.split()[-1] for c in calls if c.startswith("start ")}
    assert lasts == ran | {fail}
    for side in ran & {"truth", "register", "export"}:
        assert f"---- {side}, run beside the others" in done.stdout
    assert len([c for c in calls if c.startswith("end ")]) == len(lasts)


@pytest.mark.parametrize("args", [["train"], ["--dry"], ["-f", "--keep-going"]])
def test_targets_or_other_options_run_a_plain_repro(tmp_path: Path, args: list[str]) -> None:
    done, calls = _run(tmp_path, "", *args)
    assert done.returncode == 0, done.stderr
    assert calls == [c for c in calls if c.startswith(("start", "end"))] and len(calls) == 2
    assert calls[0].split()[3:] == ["repro", *args]
    assert "a plain `dvc repro" in done.stderr


def _as_from_a_terminal() -> None:
    """The child's SIGINT as a shell started from a terminal has it: default and unblocked. A disposition or mask
    inherited from the test process (the suite's worker runs other tests' libraries first) would survive exec, and
    a shell started with SIGINT ignored cannot trap it (POSIX)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _group_state(pgid: int) -> str:
    """Each process of the group with its signal dispositions and mask (for a failure's message)."""
    lines = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if os.getpgid(int(status.parent.name)) != pgid:
                continue
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            cmd = (status.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
        state, ignored, blocked = (fields.get(k, "").strip() for k in ("State", "SigIgn", "SigBlk"))
        lines.append(f"{status.parent.name} {state} SigIgn={ignored} SigBlk={blocked} {cmd}")
    return "\n".join(lines)


def test_an_interrupt_stops_the_repros_beside_with_their_children(tmp_path: Path) -> None:
    """Ctrl-C must not leave the side repro and its stage running on alone."""
    import signal
    import time

    fake = tmp_path / "dvc"
    fake.write_text('#!/bin/sh\nlast=""; for a in "$@"; do last="$a"; done\n'
                    'if [ "$last" = truth ]; then sleep 60 & echo $! > "$CHILD"; echo truth >> "$STARTED"; wait; fi\n'
                    'echo "$last" >> "$STARTED"\n'
                    'sleep 60\n', encoding="utf-8")
    fake.chmod(0o755)
    child, started = tmp_path / "child.pid", tmp_path / "started"
    env = {**os.environ, "DVC": str(fake), "CHILD": str(child), "STARTED": str(started)}
    proc = subprocess.Popen(["sh", "pipelines/repro.sh"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=_as_from_a_terminal)
    # Ctrl-C once the truth's stage and the main chain both run (a SIGINT sent while the script forks the chain
    # would miss the chain's dvc, which the script then waits for: a race of the test's making, not Ctrl-C's)
    for _ in range(300):
        if started.is_file() and {"truth", "calibrate"} <= set(started.read_text().split()):
            break
        time.sleep(0.1)
    truth_child = int(child.read_text())
    # Ctrl-C: SIGINT to the foreground group, which the side repro, a background job of a script, ignores
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        state = _group_state(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"the script did not end on SIGINT; its process group:\n{state}") from None
    assert proc.returncode != 0 and "interrupted" in err
    for _ in range(50):
        try:
            os.kill(truth_child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(truth_child, signal.SIGKILL)
        raise AssertionError("the side repro's stage outlived the interrupt")
