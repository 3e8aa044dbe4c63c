"""The ``refinedepth`` command line: a thin Click layer over the library."""
