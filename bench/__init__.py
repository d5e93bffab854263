"""reactor's benchmark suite: reactor against asyncio, uvloop, selectors and a C epoll server.

Run it from the repository root::

    python -m bench --quick          # about a minute: 1 round, 2 s runs, a subset
    python -m bench                  # the full matrix: 3 rounds, 5 s runs (see docs/benchmarks.md)

Modules:

* :mod:`bench.run` -- command line, the interleaved run loop, retries;
* :mod:`bench.peers` -- the servers compared (bench/servers/, bench/c/epoll_server.c);
* :mod:`bench.workloads` -- the workloads and their load generators (wrk, bench/c/echo_load.c);
* :mod:`bench.system` -- /proc readings (CPU time, steal, RSS) and process control;
* :mod:`bench.report` -- medians, the Markdown table, the chart, the JSON;
* :mod:`bench.build` -- compiles the C programs into bench/.build/.
"""
