"""The profile page and the exports other tools read."""
