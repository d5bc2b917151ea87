"""`fastserve bench`: an open-loop load generator (the compiled engine) and the command around it."""
