"""The command line: every subcommand builds with its handler, no default writes into the committed docs/, and user
errors are one line naming the fix. That the product never imports the analysis package is checked with the rest
of the package's structure (test_architecture.py)."""
import argparse
import importlib
import runpy
import signal
from pathlib import Path

import pytest
import setuptools

from fusion_prune_ros.cli import build_parser, main
from fusion_prune_ros.errors import UserError

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "fusion_prune_ros"
COMMANDS = {"synth", "to-bag", "show", "train", "eval", "export", "prune", "sweep", "latency-table",
            "allocation-ablation", "curve-shapes", "altermoma-b-sweep", "variant-latency", "replay", "play", "record",
            "demo", "bench", "soak", "ros-setup"}
METHODS = ("altermoma", "crossprune", "dm3d", "magnitude", "mmprune4u", "random", "snip", "taylor")


@pytest.fixture
def cli(capsys):
    """Run main() in-process; returns (exit status, stderr lines). main() installs a SIGTERM handler: restored."""
    old = signal.getsignal(signal.SIGTERM)

    def run(*argv):
        status = main([str(a) for a in argv])
        return status, capsys.readouterr().err.strip().splitlines()

    yield run
    signal.signal(signal.SIGTERM, old)


def _subcommands(parser) -> dict:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_the_parser_builds_every_subcommand_with_its_handler():
    commands = _subcommands(build_parser())
    assert set(commands) == COMMANDS
    for name, parser in commands.items():
        assert callable(parser.get_default("func")) and parser.format_help()
        # no default output into the tracked docs/: refreshing them is always an explicit path
        defaults = [a.default for a in parser._actions if isinstance(a.default, str)]
        assert not [d for d in defaults if d.startswith("docs")], name
    flushed = {n for n, p in commands.items() if p.get_default("flush_denormals")}
    assert flushed == {"train", "prune", "sweep", "allocation-ablation"}
    for name in ("prune", "sweep", "train", "eval"):  # every command that reads the training data takes its root
        options = {o for a in commands[name]._actions for o in a.option_strings}
        assert {"--dataroot", "--version"} <= options, name


def test_the_console_script_and_python_m_reach_main(monkeypatch):
    captured = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    monkeypatch.chdir(ROOT)
    runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    script = next(s for s in captured["entry_points"]["console_scripts"] if s.startswith("fusion-prune "))
    module, function = script.split("=")[1].strip().split(":")
    assert getattr(importlib.import_module(module), function) is main
    assert (PACKAGE / "cli" / "__main__.py").is_file()  # python -m fusion_prune_ros.cli (the launch files use it)


def test_unknown_names_are_rejected_with_the_known_ones(cli):
    status, err = cli("prune", "--dense", "missing.pt", "--method", "foo", "--sparsity", 0.5)
    assert status == 2 and len(err) == 1
    assert err[0].startswith("fusion-prune prune: error: unknown pruning method 'foo': expected one of ")
    assert all(m in err[0] for m in METHODS)
    from fusion_prune_ros.prune.registry import build_method
    from fusion_prune_ros.prune.sweep import SweepConfig, plan

    with pytest.raises(UserError, match="unknown pruning method 'foo': expected one of altermoma, ") as planned:
        plan(SweepConfig(channel_methods=["magnitude", "foo"], channel_levels=[0.5]))
    assert all(m in str(planned.value) for m in METHODS)
    for method in ("dm3d", "mmprune4u"):
        with pytest.raises(UserError, match="unknown allocator 'greedy': expected one of dp, lagrangian"):
            build_method(method, allocator="greedy")


def test_a_missing_data_set_is_one_line_naming_the_command_that_makes_it(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a fresh clone: no data/ folder
    status, err = cli("train", "--config", ROOT / "config" / "detector" / "base.yaml", "--out", "run", "--quiet")
    assert status == 2 and len(err) == 1
    assert ("no v1.0-trainval data set at data/trainval (no such folder): generate it first with `fusion-prune synth "
            "--out data/trainval --version v1.0-trainval --train-scenes 150 --val-scenes 25 --no-camera-sweeps` "
            "(about 26 minutes on 2 cores)") in err[0]
    status, err = cli("train", "--config", ROOT / "config" / "detector" / "small.yaml", "--out", "run",
                      "--dataroot", "nowhere", "--version", "v1.0-mini", "--quiet")
    assert status == 2 and len(err) == 1 and "`fusion-prune synth --out nowhere --version v1.0-mini`" in err[0]


def test_prune_and_eval_take_the_data_root_and_stop_before_claiming_a_variant(cli, shipped, tmp_path):
    dense = shipped / "models" / "model.pt"
    status, err = cli("prune", "--dense", dense, "--method", "magnitude", "--sparsity", 0.5, "--out", tmp_path / "v",
                      "--dataroot", tmp_path / "none", "--quiet")
    assert status == 2 and len(err) == 1 and "generate it first with `fusion-prune synth" in err[0]
    assert not (tmp_path / "v").exists()
    status, err = cli("eval", "--checkpoint", dense, "--dataroot", tmp_path / "none", "--out", tmp_path / "e")
    assert status == 2 and len(err) == 1 and f"no v1.0-mini data set at {tmp_path / 'none'}" in err[0]
