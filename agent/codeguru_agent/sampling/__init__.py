"""Sampling: from sys._current_frames() to flat stack counts, on the agent's sampling thread."""
