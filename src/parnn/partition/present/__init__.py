"""Presentation: the tables of ``parnn profile/partition/simulate`` and the simulated
timeline as a PNG and a Chrome trace. Reads the pure values; nothing below imports it."""
