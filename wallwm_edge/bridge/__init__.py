"""wallwm_edge.bridge"""
