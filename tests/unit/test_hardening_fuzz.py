"""Issue 16: the short run of ``make fuzz`` (bench/fuzz.py). Hostile frames and records through
admit and analyse: nothing escapes, every refusal is a writable dead letter with a known reason,
hostile inputs are never accepted, ordinary frames always are, and no input costs more than
the CPU budget."""
from __future__ import annotations

import json

from bench import fuzz


def test_short_fuzz_run_finds_nothing(tmp_path):
    report = fuzz.fuzz(inputs=400, seed=16, workdir=tmp_path)
    summary = report.summary(fuzz.DEFAULT_BUDGET_MS, 16)
    assert report.ok, json.dumps(summary)
    assert summary["inputs"] == 400 and summary["escaped"] == 0
    assert summary["dead_letters"] > 100 and summary["accepted"] > 100
    # the hostile families all occurred, and each was refused for its own reason
    for reason in ("corrupt_jpeg", "decode_budget", "unsupported_jpeg", "missing_image",
                   "malformed_record"):
        assert summary["reasons"].get(reason), json.dumps(summary)


def test_the_fuzz_command_prints_one_json_line(capsys):
    assert fuzz.main(["--inputs", "40", "--seed", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert list(summary)[:5] == ["inputs", "dead_letters", "escaped", "max_ms", "p99_ms"]
    assert summary["inputs"] == 40 and summary["max_ms"] <= summary["budget_ms"]


def test_the_pipeline_refuses_a_scan_bomb_within_budget(tmp_path):
    import time

    source = fuzz.Inputs(tmp_path, seed=1, now_ms=int(time.time() * 1000))
    pipeline = fuzz.Pipeline(source.store)
    bomb = fuzz.scan_bomb(source.big[1], 20_000, 4 << 20)
    outcome = pipeline.timed(fuzz.Case("scan_bomb", source.value(source.record(bomb)), True),
                             source.now_ms)
    assert (outcome.verdict, outcome.reason) == ("dead_letter", "decode_budget")
    assert outcome.cpu_ms < fuzz.DEFAULT_BUDGET_MS
