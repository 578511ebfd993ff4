"""What ownstream knows how to collect: stream definitions, connector manifests, identity rules."""

from ownstream.registry.catalog import Catalog

__all__ = ["Catalog"]
