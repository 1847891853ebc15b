"""Differential privacy: samplers, budgets and cohort statistics."""
