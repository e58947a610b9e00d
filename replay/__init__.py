"""Offline replay: what a candidate policy would have earned on logged traffic."""
