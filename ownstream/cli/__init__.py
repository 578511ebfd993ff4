"""The owner's command line: one module per noun, all sharing `output` and the data directory."""
