"""HAADF-STEM simulation: probe, detectors, potentials, multislice and the fast renderer.

Units follow ase and abTEM: Å, eV and mrad for atoms and optics; the
renderer takes aggregates and pixel sizes in nm.  Image intensities are
fractions of the incident beam.
"""

from heteroagg.stem.calibration import calibrate
from heteroagg.stem.detectors import AnnularDetector, SensitivityDetector
from heteroagg.stem.lut import HaadfLUT, default_lut
from heteroagg.stem.multislice import SimulationGrid, auto_window, haadf_multislice, simulation_grid
from heteroagg.stem.particle_paths import ParticlePaths, particle_paths, pixel_positions
from heteroagg.stem.probe import Probe, electron_wavelength, interaction_constant
from heteroagg.stem.renderer import (
    FieldOfViewWarning,
    HaadfRenderer,
    Rendering,
    probe_kernel,
    render_haadf,
)

__all__ = [
    "AnnularDetector",
    "FieldOfViewWarning",
    "HaadfLUT",
    "HaadfRenderer",
    "ParticlePaths",
    "Probe",
    "Rendering",
    "SensitivityDetector",
    "SimulationGrid",
    "auto_window",
    "calibrate",
    "default_lut",
    "electron_wavelength",
    "haadf_multislice",
    "interaction_constant",
    "particle_paths",
    "pixel_positions",
    "probe_kernel",
    "render_haadf",
    "simulation_grid",
]
