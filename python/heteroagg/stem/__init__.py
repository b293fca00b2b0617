"""HAADF-STEM simulation: probe, detectors, potentials and multislice.

Units follow ase and abTEM: Å, eV and mrad.  Image intensities are
fractions of the incident beam.
"""

from heteroagg.stem.detectors import AnnularDetector, SensitivityDetector
from heteroagg.stem.multislice import SimulationGrid, auto_window, haadf_multislice, simulation_grid
from heteroagg.stem.probe import Probe, electron_wavelength, interaction_constant

__all__ = [
    "AnnularDetector",
    "Probe",
    "SensitivityDetector",
    "SimulationGrid",
    "auto_window",
    "electron_wavelength",
    "haadf_multislice",
    "interaction_constant",
    "simulation_grid",
]
