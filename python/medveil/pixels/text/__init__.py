"""Burned-in text: the core's screen, the detector and identifier matching."""
