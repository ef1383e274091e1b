"""Cost models: pure functions of hardware and workload specs ("how long does X take?")."""
