"""wallwm-edge: an edge-deployable implementation of WALL-WM, the event-grounded World Action Model.

Importing the package is cheap and torch-free; subpackages import their heavy dependencies lazily.
"""

__version__ = "0.1.0"
