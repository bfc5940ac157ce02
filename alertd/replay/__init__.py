"""Replaying price history through the engine and rules: lead times before liquidation."""
