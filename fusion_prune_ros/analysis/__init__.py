"""Research analysis of the pruning framework: ablations, the sweep's report and the targets checked against it.

Each module is one job behind one `fusion-prune` command (allocation-ablation, altermoma-b-sweep, curve-shapes,
latency-table, variant-latency, the sweep's report). They read what the product builds (checkpoints, manifests,
the sweep's rows) and write Markdown, CSV, JSON and plots. The product (the pruning framework, the detector, the
node) never imports this package, so what ships does not depend on how results are reported.
"""
