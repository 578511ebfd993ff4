"""`python -m ownstream …` is the `ownstream` command."""

from ownstream.cli.main import app

app()
