"""The pruning methods' own steps, one module per method (and per mechanism where a method has several): the
importances, allocators, weight updates and fine-tuning losses that registry.py composes into methods."""
