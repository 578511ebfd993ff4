"""What only PostgreSQL can show: several writers at once, processes sharing one database."""
