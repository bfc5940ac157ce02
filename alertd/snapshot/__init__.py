"""The snapshot format (what ``alertd calc`` reads), live pulls from the exchanges, and the
comparison of alertd's figures with the exchange's own."""
