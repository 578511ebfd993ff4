"""Running connectors: the wire protocol, transports, the run lifecycle and imports."""
