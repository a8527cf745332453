"""Measurement callbacks: drop them into any Lightning Trainer."""
