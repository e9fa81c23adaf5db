"""wallwm_edge.events: the unit of learning.

vocab     event keys, captions, paraphrases (training / held out); task registry (SEEN_TASKS, HELDOUT_TASKS)
phases    four-track events of an expert episode from simulator state and the expert's commands
segment   automatic segmentation of unlabeled episodes, boundary F1
encoder   all-MiniLM-L6-v2 caption embeddings (offline, disk-cached)
sampler   k-means over caption embeddings, cluster-balanced distributed sampler
language  broad training texts per event (verb/object synonyms, sentence shapes, casing, typos)
end_rule  the one end-of-event rule: "done" from a fresh observation, how much of a chunk runs

The event record itself (`Event`) lives with the episode schema in wallwm_edge.data.episode.
Nothing here imports torch or mujoco at import time.
"""
