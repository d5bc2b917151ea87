"""Live quality: predictions kept until their ground truth arrives, and what the labels say of each version."""
