"""Venue adapters: one folder per venue holding its wire formats, clients and limits."""
