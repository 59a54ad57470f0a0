"""Measurement: the profiler (per-unit times and bytes), the communication model's
ping-pong, the cache of both, and the profile sources that measure what the solvers ask
for (``resolve``). The values they produce (:class:`~parnn.partition.profile.ModelProfile`,
:class:`~parnn.partition.comm.CommModel`) live one level up, with the solvers."""
