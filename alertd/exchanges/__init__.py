"""One module per exchange: how its account data is read and what its margin conventions are."""
