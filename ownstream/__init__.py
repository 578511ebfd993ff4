"""ownstream: a personal-data server.

Stream definitions are shared; connection identity is not; acquisition paths are provenance.
"""

__version__ = "0.1.0"
