"""Persistence. Only this package speaks SQL; everything else calls its semantic interface."""

from ownstream.store.base import Store

__all__ = ["Store"]
