"""Worker processes under one supervisor (`fastserve serve --workers N`): the supervisor owns the repository and the
decisions, the workers serve and follow."""
