"""The SimPy engine: when does each step of training happen, and who waits for whom."""
