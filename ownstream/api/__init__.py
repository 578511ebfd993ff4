"""The HTTP surface: PDPP client reads (/v1/...) and owner operations (/v1/owner/...)."""
