"""Sources of domain events: they publish on the bus and know nothing else."""
