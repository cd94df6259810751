"""benchmarks/gpu.py runs end to end in its ``--smoke`` mode (tiny model, this CPU), writes
its JSON, and says plainly that the CUDA path was not chosen here; its bandwidth table
and bound are right for the GPU it is meant for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.gpu import bandwidth_for, bound_tokens_per_s

ROOT = Path(__file__).resolve().parent.parent


def test_smoke_run_writes_its_report(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--smoke", "--out", str(tmp_path), "--budget-s", "120"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu-benchmark.json").read_text())
    chosen = report["runs"]["chosen"]
    assert chosen["path"]["device"] == "cpu" and chosen["path"]["backend"] == "dense"
    assert [p["batch"] for p in chosen["points"]] == [1, 8]
    assert all(p["tokens_per_s"] > 0 and p["tokens"] == p["batch"] * 8 for p in chosen["points"])
    assert report["cuda_path_ok"] is False and not any(report["cuda_path_checks"].values())
    assert "CUDA path: NOT CHOSEN" in done.stdout


def test_bandwidth_table_and_bound():
    assert bandwidth_for("NVIDIA H200", None) == (4.8, "table (H200)")
    assert bandwidth_for("NVIDIA H100 80GB HBM3", None)[0] == 3.35
    assert bandwidth_for("NVIDIA H100 PCIe", None)[0] == 2.0
    assert bandwidth_for("NVIDIA GH200 480GB", None)[0] == 4.0
    assert bandwidth_for("Mystery GPU", None)[0] is None
    assert bandwidth_for("NVIDIA H200", 4.0) == (4.0, "--bandwidth")
    weights = 248_000_000  # GPT-2 small in bf16
    assert round(bound_tokens_per_s(1, weights, 0, 4.8)) == round(4.8e12 / weights)  # ~19,355
    # batching shares each weight read: the bound grows with the batch, below linear once KV reads count
    assert bound_tokens_per_s(64, weights, 7e6, 4.8) < 64 * bound_tokens_per_s(1, weights, 7e6, 4.8)
    assert bound_tokens_per_s(64, weights, 7e6, 4.8) == 64 * 4.8e12 / (weights + 64 * 7e6)
    assert bound_tokens_per_s(64, weights, 7e6, 4.8) > bound_tokens_per_s(8, weights, 7e6, 4.8)
