"""wallwm_edge.eval: closed-loop evaluation in simulation (success rate and Task Progress per task and split)."""
