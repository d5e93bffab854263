"""Data structures with no knowledge of sockets or loops (gnet: ``pkg/``): the buffers."""
