"""Progress bars of long commands: drawn on a terminal, absent when stderr is a pipe or a file
(logs, CI) and with --quiet. The terminal is a real pseudo-terminal."""
from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

pytestmark = pytest.mark.integration
MODEL = "centernet-coco"


def camflow_stderr(*args: str, terminal: bool) -> str:
    """stderr of ``camflow ARGS`` when it is a terminal (pty) or a pipe."""
    from camflow.jobs.environment import child_env
    command = [sys.executable, "-m", "camflow.commands", *args]
    if not terminal:
        done = subprocess.run(command, capture_output=True, text=True, env=child_env(),
                              stdin=subprocess.DEVNULL, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stderr
    controller, terminal_fd = pty.openpty()
    # 24 rows, 120 columns: a new pty has size 0x0, where tqdm draws an empty line
    fcntl.ioctl(terminal_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=terminal_fd,
                               stdin=subprocess.DEVNULL, env=child_env())
    os.close(terminal_fd)
    chunks = []
    while True:
        try:
            data = os.read(controller, 4096)
        except OSError:  # EIO: the command exited and closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(controller)
    assert process.wait(timeout=300) == 0
    return b"".join(chunks).decode(errors="replace")


def test_models_build_draws_a_bar_only_on_a_terminal(built_models):
    on_terminal = camflow_stderr("models", "build", MODEL, terminal=True)
    assert "models: 100%" in on_terminal and "1/1" in on_terminal
    piped = camflow_stderr("models", "build", MODEL, terminal=False)
    assert f"{MODEL}: cached" in piped  # the log lines are still there
    assert "%|" not in piped and "models:" not in piped
    quiet = camflow_stderr("models", "build", MODEL, "--quiet", terminal=True)
    assert f"{MODEL}: cached" in quiet and "%|" not in quiet


def test_file_ingest_draws_a_bar_only_on_a_terminal(vtest_path, kafka_bootstrap, make_topics,
                                                     unique_topic, tmp_path):
    topic = unique_topic("frames")
    make_topics({topic: 1})
    config = tmp_path / "camflow.yaml"
    config.write_text(f"kafka:\n  bootstrap_servers: {kafka_bootstrap}\n"
                      f"  topics:\n    frames: {topic}\n")
    args = ("ingest", "--camera", "walkway", "--source", str(vtest_path), "--fps", "1",
            "--max-frames", "3", "--max-width", "320", "--config", str(config))
    assert "ingest vtest.avi: 100%" in camflow_stderr(*args, terminal=True)
    assert "%|" not in camflow_stderr(*args, terminal=False)
    assert "%|" not in camflow_stderr(*args, "--quiet", terminal=True)
