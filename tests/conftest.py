import os

# Headless MuJoCo rendering on CPU machines; the sentence encoder ships offline in a pip package.
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
