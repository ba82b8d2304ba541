"""The weekly report: params, stage runner, notebook helpers, figures, export."""
