"""The vqcodec benchmark suite: rate-distortion, speed and memory of vqcodec against Pillow's codecs.

`vqcodec.bench.runner.run_benchmark` is the entry point (the `vqcodec bench` command wraps it);
`vqcodec.bench.bdrate.bd_rate` computes Bjontegaard delta rates. See docs/benchmarks.md.
"""
