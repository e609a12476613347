"""Offline accuracy of the perception stages and the watchlist on labelled real data (``camflow eval``)."""
