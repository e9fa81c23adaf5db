"""wallwm_edge.train"""
