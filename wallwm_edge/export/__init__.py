"""wallwm_edge.export"""
