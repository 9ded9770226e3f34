"""The offline -> onboard hand-off: a variant's manifest and the latency key that every timing is filed under."""
import json
from pathlib import Path

import pytest
import yaml

from fusion_prune_ros.errors import UserError
from fusion_prune_ros.export.manifest import Manifest, read_manifests
from fusion_prune_ros.prune.framework_version import FRAMEWORK_VERSION
from fusion_prune_ros.runtime.latency_key import ORT_CPU_2T, LatencyKey
from fusion_prune_ros.runtime.profile import load_profile

ROOT = Path(__file__).parents[1]


def test_latency_key_spelling_round_trips_and_bad_spellings_are_rejected():
    assert str(ORT_CPU_2T) == "ort-cpu-2t"
    assert LatencyKey.parse("trt-cuda-1t") == LatencyKey("trt", "cuda", 1)
    for bad in ("ort-cpu", "ORT-cpu-2t", "ort-cpu-0t", "ort-cpu-2", ""):
        with pytest.raises(UserError, match="latency key"):
            LatencyKey.parse(bad)


def test_a_profile_with_a_misspelt_latency_key_is_a_one_line_error(tmp_path):
    source = ROOT / "config" / "profiles" / "default.yaml"
    data = yaml.safe_load(source.read_text())
    data["variants"][0]["latency_ms"] = {"ort_cpu_2": 12.0}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match=r"bad.yaml: latency key 'ort_cpu_2'"):
        load_profile(bad, check_files=False)


def test_every_shipped_manifest_reads_back_identically_and_gives_its_timings():
    manifests = read_manifests(ROOT / "models" / "variants")
    assert manifests, "the package ships pruned variants"
    for m in manifests:
        folder = ROOT / "models" / "variants" / m.name
        assert json.loads(Manifest.path(folder).read_text()) == json.loads(json.dumps(m.__dict__))
        assert m.median_ms("fused") == m.latency_ms["ort-cpu-2t"]["fused"]["median_ms"] > 0
        assert 0 <= m.nds("fused") <= 1 and m.nds("not evaluated") == -1.0
        assert m.framework == FRAMEWORK_VERSION  # the shipped variants are built with the current framework


def test_manifest_write_is_atomic_and_unknown_fields_or_timings_are_errors(tmp_path):
    shipped = read_manifests(ROOT / "models" / "variants")[0]
    shipped.write(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temporary file left behind
    assert Manifest.read(tmp_path) == shipped
    with pytest.raises(UserError, match="no fused latency measured on trt-cuda-1t"):
        shipped.median_ms("fused", LatencyKey("trt", "cuda", 1))
    data = json.loads(Manifest.path(tmp_path).read_text())
    Manifest.path(tmp_path).write_text(json.dumps({**data, "sparsty": 0.3}))
    with pytest.raises(UserError, match="unknown key"):
        Manifest.read(tmp_path)
    with pytest.raises(UserError, match="no variant manifest"):
        Manifest.read(tmp_path / "missing")


def test_a_manifest_without_its_framework_version_is_an_error(tmp_path):
    shipped = read_manifests(ROOT / "models" / "variants")[0]
    shipped.write(tmp_path)
    data = json.loads(Manifest.path(tmp_path).read_text())
    del data["framework"]
    Manifest.path(tmp_path).write_text(json.dumps(data))
    with pytest.raises(UserError, match="framework"):
        Manifest.read(tmp_path)
