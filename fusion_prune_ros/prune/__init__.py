"""The pruning stage: scorers (one file per method), allocators, granularities, fine-tuning, variants, the sweep."""
