"""wallwm_edge.sim: the simulated robot and its data.

metaworld_env   MetaWorldEnv(SimConfig(...)): Meta-World task, V calibrated cameras (Rig), expert policy
generate        generate_dataset(out, tasks, episodes_per_task, ...): expert episodes with events

Import the submodules; this package imports nothing heavy (mujoco loads with metaworld_env).
"""
