"""Training: the step-based loop (dense training and fine-tuning) and the dense detector stage."""
