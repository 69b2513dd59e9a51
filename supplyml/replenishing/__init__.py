"""Replenishment policies judged against exact references (issue: a learned replenishment policy)."""
