"""Development aids that never sit in a connector code path: fixture data and API test doubles."""
