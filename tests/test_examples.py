"""examples/: short research scripts, each run end to end (a fresh process: its registrations start clean)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "research_api.py"


def test_research_api_example_is_at_most_40_lines():
    assert len(EXAMPLE.read_text().splitlines()) <= 40


@pytest.mark.slow
def test_research_api_example_runs_its_own_model_classifier_matching_and_method(tmp_path):
    pytest.importorskip("pandas")
    done = subprocess.run([sys.executable, str(EXAMPLE), str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    header = next(line for line in done.stdout.splitlines() if "user_id" in line).split()
    assert header == ["user_id", "method", "auc", "test_rows", "local_rows", "aug_rows", "reference"]
    saved = json.loads((tmp_path / "results.json").read_text())
    cfg = saved["config"]
    assert cfg["model"]["name"] == "two-tower" and cfg["classifier"]["kind"] == "wide-mlp"
    assert cfg["retrieval"]["matching"] == "busiest" and cfg["methods"][-1] == "coda-soft"
    assert saved["data"]["source"] == "DataFrame" and saved["provenance"]["versions"]["flax"]
    users = saved["methods"]["coda-soft"]["users"]
    assert users > 0 and f"[{users * len(saved['methods'])} rows x 7 columns]" in done.stdout   # + coarse-subset
    soft, coda = (saved["methods"][m]["per_user_aug_rows"] for m in ("coda-soft", "coda"))
    for uid, n in soft.items():                 # coda-soft trains on every candidate, coda on the kept 90%
        assert n > 0 and coda[uid] == math.ceil(0.9 * n), uid
