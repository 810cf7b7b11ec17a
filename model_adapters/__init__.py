"""Model adapters and the image log-likelihood engine that serves them to lm-eval."""
