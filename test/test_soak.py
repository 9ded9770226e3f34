"""The soak (slow, out of the default run): 10,000 LiDAR sweeps through the node's pipeline at the live pace with
the budget cycling, then the issue's criteria: memory growth < 5% after warm-up, no descriptor or thread growth,
every sweep accounted for, latency percentiles stable. README: `pytest -m slow test/test_soak.py`."""
import pytest

from fusion_prune_ros.runtime.core import CoreConfig
from fusion_prune_ros.tools.soak import SoakConfig, soak, summary


@pytest.mark.slow
def test_soak_ten_thousand_frames(shipped, tmp_path):
    cfg = CoreConfig(profile=str(shipped / "profiles" / "dense.yaml"), backend="onnxruntime", device="cpu")
    result = soak(shipped / "val_bag", cfg, tmp_path / "soak", SoakConfig(frames=10_000), quiet=True)
    print(summary(result))
    assert result["lidar_sweeps"] >= 10_000 and result["accounted"]
    assert result["rss_mb"]["growth"] < 0.05
    assert result["fds"]["end"] <= result["fds"]["after_warmup"]
    assert result["threads"]["end"] <= result["threads"]["after_warmup"]
    p95 = [q["p95"] for q in result["latency_quarters_ms"]]
    assert max(p95[1:]) <= 2 * min(p95[1:]) + 5.0  # after the first quarter, no drift beyond noise
    assert result["passed"]
