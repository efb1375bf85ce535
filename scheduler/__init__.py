"""Pure learning-science algorithms: no I/O, no clock, no hidden randomness.

Time and random generators are arguments. Processors and routes are thin
adapters around these functions.
"""
