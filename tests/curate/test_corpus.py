"""The soak corpus through the real CLI: every bad-input kind of issue 12 gets the outcome it is owed, every file
named or expanded is accounted for, and no file a playlist or list names (a sentinel FIFO) is opened.

Slow (a fresh local Ray and ~16 inputs take minutes on 2 loaded cores); ``bench/soak.py`` runs the same at scale.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rushes.testing.corpus import BAD, accounting, make_corpus, outcomes

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_every_corpus_case_gets_its_outcome_and_every_input_is_accounted_for(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", n=2)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "rushes.cli", "curate", *corpus.inputs, "--out", str(out),
           "--preset", "debug", "--no-scores", "--num-cpus", "2"]
    try:
        for _ in range(2):  # on an overloaded machine Ray's own 30 s node start-up limit can pass: rerun (resumes)
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
            if "timed out during startup" not in proc.stderr:
                break
    finally:
        corpus.close()
    assert proc.returncode == 1, proc.stderr[-3000:]  # finished, some inputs failed (rushes.exits)
    assert corpus.sentinels and corpus.sentinels_opened() == 0, "a file a playlist or list names was opened"
    results = outcomes(corpus, out)
    assert len({r["case"].kind for r in results}) >= len(BAD) + 2  # every bad kind, the .txt, an original, goods
    failed = [(r["case"].kind, r["case"].expect, r["case"].match, r["actual"], r["message"][:200])
              for r in results if not r["pass"]]
    assert not failed, failed
    acc = accounting(corpus, out, json.loads((out / "summary.json").read_text())["curate"])
    assert acc["accounted"] == acc["total"] == len(corpus.cases), acc
    assert acc["skipped"] == sum(c.expect.startswith("skipped") for c in corpus.cases) > 0
