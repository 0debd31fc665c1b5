"""A restored target's own record (.diffimg/): its state, the paths kept (--keep), the quick check against
it and its status."""
