"""The version of the pruning framework a variant was built with, recorded in its manifest (`Manifest.framework`)
and the results table's `framework` column, so that rows built under different rules are never compared unawares.

1: variants built before the distortion counted regression only at object centres, before equal fine-tuning
(CrossPrune distilled by default) and CrossPrune's channels followed its projection.
2: those three rules (docs/pruning.md).
"""
FRAMEWORK_VERSION = 2
