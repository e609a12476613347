"""Folders have one role and imports point one way: the contract in ``.importlinter``
(commands -> infra -> evaluation -> services -> jobs -> core -> config -> models -> transforms
-> schemas; transforms and models never import Flink or Kafka), checked by import-linter."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_import_contract_holds():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--config", str(REPO / ".importlinter"), "--no-cache"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
