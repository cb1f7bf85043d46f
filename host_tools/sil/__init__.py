"""Software-in-the-loop bench: the firmware on the real MicroPython unix port
against a plant model, with its CAN bus exposed as a python-can bus."""
from .plant import Plant, PlantParams
from .sim import RealtimeBench, Simulation

__all__ = ["Plant", "PlantParams", "Simulation", "RealtimeBench"]
