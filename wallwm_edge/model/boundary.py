"""The action boundary of WallWM: the modules kept float in every quantized variant (DESIGN.md, decision 4).

The time embedding's sinusoid features and the action projections carry small, precise values that one
int8 scale per tensor cannot resolve, and the termination head's logit decides when an event ends. Every
consumer (int8 quantization, float16 conversion, TensorRT build profiles) takes this one tuple; the names
are module attributes of `wallwm_edge.model.denoiser.WallWM`, and tests/export/test_action_boundary.py
fails if one of them stops being a module of the model. Kept in its own torch-free file so the TensorRT
profile code on a Jetson can read it without importing torch.
"""

ACTION_BOUNDARY = (
    "time_mlp",  # flow-time embedding
    "action_in",  # noisy action tokens -> width
    "action_norm_out",  # the LayerNorm in front of the action projection
    "action_out",  # width -> actions
    "end_head",  # termination logit
)
