"""wallwm_edge.bridge: the host end of the serial/CAN link to the arm firmware (torch-free).

    from wallwm_edge.bridge import ArmLink, open_simulated_link
    link = ArmLink.open("serial:/dev/ttyUSB0")       # or "can:socketcan:can0?fd=1", "loop:NAME"
    link.send_chunk(points, chunk_id=3, event_id=1)  # (L, D) targets + gripper; blocks until queued
    link.state(); link.hold(); link.end_session()  # BYE: a clean end trips no watchdog (close(): a disconnect)
    play(link, chunks)                               # a chunk file to its end: paced, with a verdict per chunk

The protocol is specified in firmware_bridge/PROTOCOL.md.
"""

from wallwm_edge.bridge.firmware import SimulatedArm, SimulatedFirmware, open_simulated_link
from wallwm_edge.bridge.link import ArmLink, ChunkTicket, LinkConfig
from wallwm_edge.bridge.playback import PlaybackReport, play
from wallwm_edge.bridge.protocol import ArmInfo, ChunkError, State
from wallwm_edge.bridge.streamer import ChunkStreamer
from wallwm_edge.errors import LinkError

__all__ = ["ArmLink", "LinkConfig", "ChunkTicket", "ChunkStreamer", "ArmInfo", "State", "ChunkError", "LinkError",
           "SimulatedArm", "SimulatedFirmware", "open_simulated_link", "play", "PlaybackReport"]
