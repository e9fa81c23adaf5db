"""wallwm_edge.model: the WALL-WM layer-coupled video-action denoiser.

    presets.py      ModelConfig + the one registry (tiny, student, teacher); resolve() fills data dims
    autoencoder.py  per-patch whitened PCA autoencoder (video latents)
    attention.py    token layout, sight-cone mask expansion, masked SDPA (empty rows -> zeros)
    sightcone.py    rig + per-frame poses -> view-token mask (geometry in wallwm_edge.ops.sightcone)
    reasoner.py     unified mode: K continuous reasoning states by Staircase Decoding
    flow.py         rectified flow
    normalizer.py   action / proprio statistics, stored in the model
    denoiser.py     WallWM: towers, coupling, heads, loss, denoise_step, sample
    checkpoint.py   safetensors + JSON header
    policy.py       Policy.from_checkpoint(path).act(obs)
"""
