"""Looking at a packed dataset: ``inspect`` shows it to a person, ``verify`` checks it."""
