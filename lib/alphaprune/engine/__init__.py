"""One run: config, data, models, training, checkpoints, evaluation."""
