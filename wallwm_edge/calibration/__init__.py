"""Field calibration of multi-view camera rigs, and the rig file everything else reads."""
