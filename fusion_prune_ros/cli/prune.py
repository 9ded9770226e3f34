"""Pruning commands: `prune` (one variant) and `sweep` (a plan of variants, their report and the node's profile)."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .common import add_data_flags, add_quiet, command, data_override, existing


def _prune(args) -> None:
    from ..prune.variant import PruneSpec, check_spec, describe, load_prune_config, prune_variant

    spec = PruneSpec(args.method, args.sparsity, args.granularity, args.seed, args.time_target)
    check_spec(spec)
    manifest = prune_variant(existing(args.dense, "dense checkpoint"), spec, load_prune_config(args.config),
                             args.out, quiet=args.quiet, data=data_override(args))
    print("\n".join(describe(manifest)))


def add_prune(sub) -> None:
    p = command(sub, "prune", _prune, "prune the dense model with one method at one sparsity and granularity",
                "Score, prune (channel: physically with Torch-Pruning; unstructured; 2:4), fine-tune with the shared "
                "budget, evaluate (fused, camera lost, LiDAR lost), export ONNX, measure latency, write "
                "manifest.json. Resumable.", flush_denormals=True)
    p.add_argument("--dense", required=True, help="dense model.pt (models/base/model.pt)")
    p.add_argument("--method", required=True, help="a method of prune/registry.py (magnitude, altermoma, dm3d, ...); an unknown name is rejected with the list of known ones")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--sparsity", type=float, help="fraction of prunable parameters removed")
    target.add_argument("--time-target", type=float, metavar="FRACTION",
                        help="fraction of the prunable units' measured time removed instead (dm3d, channel)")
    p.add_argument("--granularity", default="channel", choices=("channel", "nm24", "unstructured"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", help="PruneConfig YAML (default: the sweep's budget, 300 steps, 128 calibration frames)")
    add_data_flags(p, "the data set the dense model was trained on")
    p.add_argument("--out", default="runs/variants")
    add_quiet(p)


def _sweep(args) -> None:
    from ..analysis.sweep_report import sweep_results, write_sweep_report
    from ..export.ladder import write_profile
    from ..export.manifest import MANIFEST_FILE, read_manifests
    from ..prune.retime import remeasure_latency
    from ..prune.sweep import load_sweep_config, plan, run_sweep, start

    cfg = load_sweep_config(args.config)
    out, dense = Path(args.out), existing(args.dense, "dense checkpoint")
    extras = tuple(existing(str(Path(d) / MANIFEST_FILE), "--extra-variant manifest").parent
                   for d in args.extra_variant)
    begun = start(plan(cfg), out, args.carry)
    print(f"sweep plan: {len(begun.specs)} variants ({begun.done} done here, {len(begun.carried)} carried), "
          f"{cfg.prune.finetune_steps} fine-tuning steps each")
    if begun.carried and args.profile:
        raise UserError(f"--profile chooses among every channel variant's graphs, but {len(begun.carried)} variants "
                        f"are carried from {args.carry} without their folders: rebuild the profile where they exist")
    if not args.report_only:
        run_sweep(dense, cfg, out, quiet=args.quiet, limit=args.limit,
                  skip=frozenset(r["name"] for r in begun.carried), data=data_override(args))
    if args.remeasure:
        remeasure_latency(read_manifests(out), dense.parent, out, extra_folders=extras)
    res = sweep_results(out, dense.parent, begun.carried, begun.earlier)
    report = write_sweep_report(res, out, Path(args.report_dir or out / "report"), [s.name for s in begun.specs],
                                args.carry)
    if args.profile:
        write_profile(res.manifests, dense.parent, out, Path(args.profile), Path(args.ship) if args.ship else None,
                      args.max_nds_loss, args.min_step_gain, extras)
        print(f"profile written: {args.profile}")
    print(f"results: {report}")


def add_sweep(sub) -> None:
    p = command(sub, "sweep", _sweep, "run (or resume) a pruning sweep, write the results table, plots and profile",
                "Methods x levels x granularities from a sweep YAML; finished variants are not redone. Writes "
                "pruning_results.{md,csv}, pareto_<granularity>.png and per_layer_channel_<level>.png into "
                "--report-dir and, with --profile, the node's profile of Pareto-optimal variants.",
                flush_denormals=True)
    p.add_argument("--dense", required=True, help="dense model.pt (models/base/model.pt)")
    p.add_argument("--config", required=True, help="sweep YAML (config/prune/sweep.yaml)")
    add_data_flags(p, "the data set the dense model was trained on")
    p.add_argument("--out", default="runs/variants", help="the variants' folders")
    p.add_argument("--report-dir", metavar="DIR", help="folder of the results table and plots (default <out>/report; "
                   "docs refreshes the committed ones)")
    p.add_argument("--profile", help="write this profile YAML")
    p.add_argument("--ship", metavar="DIR", help="copy the profile's pruned variants here (e.g. models/variants) "
                   "and point the profile at the copies")
    p.add_argument("--max-nds-loss", type=float, default=0.05,
                   help="latency steps of the profile lose at most this much NDS against the dense fused model")
    p.add_argument("--min-step-gain", type=float, default=0.10,
                   help="each latency step of the profile is at least this fraction faster than the one above it "
                   "(steps within the timing noise are thinned out)")
    p.add_argument("--extra-variant", action="append", default=[], metavar="DIR",
                   help="a channel variant's folder built outside the plan (`fusion-prune prune`, e.g. with "
                   "--time-target and a longer fine-tune) that --profile may choose from and --remeasure re-times; "
                   "not a row of the results table, whose rows share one budget (repeatable)")
    p.add_argument("--limit", type=int, help="run at most this many new variants now")
    p.add_argument("--report-only", action="store_true", help="only rebuild the table, plots and profile")
    p.add_argument("--remeasure", action="store_true",
                   help="re-time the dense model and every variant side by side first (on an otherwise idle machine)")
    p.add_argument("--carry", metavar="CSV", help="take the rows of planned variants whose folders are not in --out "
                   "from this earlier results CSV instead of building them (e.g. docs/pruning_results.csv on a fresh "
                   "machine)")
    add_quiet(p)


COMMANDS = (add_prune, add_sweep)
