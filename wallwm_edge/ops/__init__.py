"""Kernels of `wallwm_edge._C` with their numpy / PyTorch references: sight-cone masks, block-sparse attention,
the fused denoising loop. Import the submodules directly (`from wallwm_edge.ops.sightcone import ...`)."""
