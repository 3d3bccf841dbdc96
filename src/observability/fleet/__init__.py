"""Several instances (and workers) as one service: who is alive, who leads."""
