"""`nox -s bench`: speed figures measured side by side and printed as ratios."""
