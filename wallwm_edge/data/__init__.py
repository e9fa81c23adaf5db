"""wallwm_edge.data"""
