"""Spotify's "Download your data" archive: the owner-supplied path to the same four streams."""
