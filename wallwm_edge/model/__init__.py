"""wallwm_edge.model"""
