"""Which version answers a request (router), canary splits and their guard (canary), shadow copies (shadow)."""
