"""Failure drills: faults injected through the Transport, measured by a client writing via the VIP."""
