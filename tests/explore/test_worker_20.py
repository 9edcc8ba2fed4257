"""``rnnkit explore``'s probe process (issue 20; :mod:`rnnkit.explore.worker`), through the real
console script: its answers are the in-process ones, it never outlives the server, Ctrl-C to
the whole process group is one line, and a killed probe process is one 503 line, then replaced."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tests.explore.test_app_20 as app_tests

from rnnkit.explore.compute import Explorer
from rnnkit.explore.worker import ProbeProcess

ENV, post, start = app_tests.ENV, app_tests.post, app_tests.start
runs = app_tests.runs  # the fixture: a tiny language model and a bidirectional tagger


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


def test_the_probe_process_answers_as_the_explorer_does_in_process(runs):
    probes = ProbeProcess([runs[0]], "best", "cpu", 2, "float64")
    try:
        probes.ready()
        here = Explorer([runs[0]])
        text = "w1 w2 w3 w4 w5"
        for method, args in (
            ("inside", (0, text, 1, 0, "c", None)),
            ("units", (0, text, 0, 0, "h", 1, 3, None)),
            ("gradient", (0, text, 1, 0)),
        ):
            answer = probes.ask(method, *args)
            assert json.loads(answer.body) == json.loads(json.dumps(getattr(here, method)(*args)))
            assert answer.compute >= 0 and answer.encode >= 0 and answer.wait >= 0
        with pytest.raises(Exception, match="layer: must be in"):  # a refusal, one line, as in process
            probes.ask("inside", 0, text, 7, 0, "h", None)
        assert probes.ask("gradient", 0, text, 0, 0).body  # and it goes on
    finally:
        probes.close()
    assert probes.proc is None


def test_a_killed_probe_process_is_replaced_at_the_next_question(runs):
    proc, url = start(str(runs[0]))
    try:
        body = {"run": 0, "text": "w1 w2 w3", "layer": 0}
        assert post(url, "gradient", body).status_code == 200
        (child,) = children(proc.pid)
        os.kill(child, signal.SIGKILL)
        assert gone_within(child, 10)
        again = post(url, "gradient", body)  # a new process, loaded for this question
        assert again.status_code == 200 and len(again.json()["map"]) == 3
        assert children(proc.pid) and children(proc.pid) != [child]
        assert post(url, "analyze", {"run": 0, "text": "w1 w2"}).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    err = proc.stderr.read()
    assert "Traceback" not in err and "the probe process had stopped (exit -9); starting a new one" in err


def test_a_probe_process_dying_during_a_question_is_one_line_then_replaced(runs, monkeypatch):
    """Killed after the check that it runs and before its answer (here: the check fooled): the
    question gets :class:`ProbeStoppedError` (the server's 503 line), the next one a new process."""
    from rnnkit.explore.worker import ProbeStoppedError

    probes = ProbeProcess([runs[0]], "best", "cpu", 2, "float32")
    try:
        probes.ready()
        first = probes.proc
        first.kill()
        first.wait()
        monkeypatch.setattr(first, "poll", lambda: None)
        with pytest.raises(ProbeStoppedError, match="the probe process stopped"):
            probes.ask("gradient", 0, "w1 w2 w3", 0, 0)
        monkeypatch.undo()
        assert len(json.loads(probes.ask("gradient", 0, "w1 w2 w3", 0, 0).body)["map"]) == 3
        assert probes.proc is not first and probes.starts == 2
    finally:
        probes.close()


def test_ctrl_c_to_the_group_is_one_line_and_leaves_no_process(runs):
    """A terminal's Ctrl-C reaches every process of the group: the probe process ignores it, the
    server stops with its one line, and the probe process ends with it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnkit", "explore", str(runs[0]), "--port", "0", "--no-browser"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout.readline().startswith("rnnkit explore: http://127.0.0.1:")
    (child,) = children(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    err = proc.stderr.read()
    assert err.strip().splitlines()[-1] == "rnnkit explore: interrupted" and "Traceback" not in err
    assert gone_within(child, 10)


def test_a_server_killed_outright_takes_its_probe_process_with_it(runs):
    proc, _ = start(str(runs[0]))
    (child,) = children(proc.pid)
    proc.kill()
    proc.wait(timeout=30)
    assert gone_within(child, 10)  # its stdin closed: it ends its loop


def test_one_thread_keeps_everything_in_one_process(runs):
    proc, url = start(str(runs[0]), "--threads", "1")
    try:
        assert post(url, "gradient", {"run": 0, "text": "w1 w2 w3", "layer": 0}).status_code == 200
        assert children(proc.pid) == []
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_a_probe_process_that_cannot_load_its_runs_says_why_in_one_line(runs, tmp_path):
    """The run's checkpoint gone after the server started: a new probe process cannot load it,
    and the question gets the loader's own line, not "stopped (killed?)"."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs[0], run)
    probes = ProbeProcess([run], "best", "cpu", 2, "float32")
    try:
        probes.ready()
        probes.proc.kill()
        probes.proc.wait()
        shutil.rmtree(run / "best")
        shutil.rmtree(run / "last", ignore_errors=True)
        with pytest.raises(Exception) as raised:
            probes.ask("gradient", 0, "w1 w2 w3", 0, 0)
        assert type(raised.value).__name__ == "RnnkitError", raised.value
        assert "stopped (killed?)" not in str(raised.value) and "\n" not in str(raised.value)
    finally:
        probes.close()
    broken = ProbeProcess([tmp_path / "nothing-here"], "best", "cpu", 2, "float32")
    with pytest.raises(Exception, match=r"config\.json") as raised:
        broken.ready()
    assert type(raised.value).__name__ == "RnnkitError"
