"""Array-API kernels shared by numpy and torch."""
