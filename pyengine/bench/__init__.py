"""The benchmark harness behind ``pyengine bench``, ``pyengine demo`` and bench/test_bench_*.py.

flops.py      FLOP and byte counts per op and per training step
timers.py     CPU (perf_counter) and GPU (CUDA events) medians after warm-up
providers.py  who can run a case here: numpy, native, numba, torch-cpu, torch-cuda, cupy
cases.py      the kernel families and training steps, one builder per provider
ceilings.py   the machine's measured SGEMM GFLOP/s and copy GB/s, in the same run
suite.py      runs the cases, derives the ratios, returns the JSON document
schema.py     that document's schema, its writer and its checker
report.py     the Markdown report and the terminal table
plots.py      throughput vs size, roofline position, speedup bars (matplotlib PNGs)
compare.py    ratios between two saved runs
committed.py  the GPU results committed under bench/results/, labelled with card, driver, date, commit;
              committed_gpu.json: the part the demo shows, installed with the package
demo.py       the CPU-vs-GPU demonstration
pytest_suite.py  what bench/test_bench_*.py share (parameters, pytest-benchmark call)
"""
