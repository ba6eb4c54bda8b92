"""The bounded queue, the batcher and acknowledgement after commit."""
