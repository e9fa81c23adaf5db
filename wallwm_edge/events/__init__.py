"""wallwm_edge.events"""
