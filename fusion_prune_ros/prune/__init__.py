"""The pruning stage: methods composed of an importance, an allocator and weight steps (registry.py), granularities,
fine-tuning, variants, the sweep."""
