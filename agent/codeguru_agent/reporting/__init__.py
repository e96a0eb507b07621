"""Reporting: a sealed aggregate becomes a profile document, encoded and delivered."""
