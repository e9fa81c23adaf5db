"""wallwm_edge.data"""

from wallwm_edge.data.dataset import Dataset, scan_episode_ids  # noqa: E402
from wallwm_edge.data.episode import TRACKS, Episode, Event, read_episode, write_episode  # noqa: E402

__all__ = ["Dataset", "Episode", "Event", "TRACKS", "read_episode", "write_episode", "scan_episode_ids"]
