"""Alert rules and their lifecycle: pure, driven by observations and a time."""
