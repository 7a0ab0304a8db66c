"""Training: one build of a config's experiment, sweep grids, and the loop over a workdir."""
