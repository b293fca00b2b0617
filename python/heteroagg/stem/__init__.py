"""Multislice HAADF-STEM simulation: atomic potentials and, later, the multislice itself."""
