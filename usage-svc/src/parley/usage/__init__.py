"""Parley usage: metering, prices, budgets and reservations."""
