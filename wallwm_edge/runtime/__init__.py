"""wallwm_edge.runtime"""
