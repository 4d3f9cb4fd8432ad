#!/bin/sh
# The GPU checks of issue 13 in one go, for a machine with CUDA (run from the repository
# root after `make setup`): the CUDA tests (skipped elsewhere), then the benchmarks with
# their device columns. Prints everything; stops at the first failure.
set -e
.venv/bin/python -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.cuda.get_device_name(0), torch.cuda.device_count(), 'GPU(s)')"
.venv/bin/python -m pytest -q -p no:cacheprovider -rs tests/test_device.py tests/test_distributed.py
.venv/bin/python bench/decode.py --device cuda
.venv/bin/python bench/diffusion.py --device cuda
.venv/bin/python bench/diffusion.py --device cpu
.venv/bin/python bench/train_scale.py --threads 4
