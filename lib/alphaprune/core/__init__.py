"""Model surgery: channel graph, gates, exact shrink, budgets, α schedules. Imports torch only."""
