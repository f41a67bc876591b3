"""veerkracht_bayes."""
