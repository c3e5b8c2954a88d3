"""Speed measurements that print JSON; run ``python -m benchmarks [--quick]``."""
