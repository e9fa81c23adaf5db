"""wallwm_edge.sim: the simulated robot (Meta-World with calibrated cameras) and dataset generation."""
