"""Timing, GPU/CPU monitors and the peer (Torch-Pruning) comparison."""
