"""What keeps the host process safe from the agent: fork safety and signal masks."""
