"""`lab bisect`: find the commit (or release) that broke a scenario."""
