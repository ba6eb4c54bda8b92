"""The reading and its parsing from raw bytes: pure, no I/O."""
