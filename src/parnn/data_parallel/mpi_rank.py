"""``python -m parnn.data_parallel.mpi_rank DIR``: one rank of an ``mpi`` run that parnn
started with ``mpiexec`` (see :func:`parnn.data_parallel.mpi.launch_mpi`)."""

from __future__ import annotations

import sys

from parnn.data_parallel.mpi import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
