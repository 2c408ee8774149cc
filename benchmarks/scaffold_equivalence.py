"""Before/after check of a refactoring of the architectures ("one U-Net scaffold").

``save FILE`` (run on the old code) records, for every registry entry:
  * the default construction (paper configuration, meta device): state_dict keys and shapes, trainable parameters,
    ``compute_conv_feature_map_size`` at a small input;
  * tiny nnU-Net-like plans (the geometries of tests/unit/test_registry.py), deep supervision on: the state_dict, the
    outputs in eval mode and in train mode (same seed), the feature-map size.
``compare FILE [PATTERN]`` (run on the new code; PATTERN: a shell pattern of registry names) rebuilds everything and checks: same keys/shapes/counts/feature-map sizes,
outputs equal after loading the OLD state_dict into the new model, and outputs equal from the same seed.

    OMP_NUM_THREADS=1 python benchmarks/scaffold_equivalence.py save /tmp/before.pt     # on main
    OMP_NUM_THREADS=1 python benchmarks/scaffold_equivalence.py compare /tmp/before.pt  # on the branch
    python benchmarks/scaffold_equivalence.py golden /tmp/before.pt tests/data/scaffold_golden.json

The last command writes the digests of the state_dict keys and the output statistics that tests/unit/test_scaffold.py
checks (recorded on commit cbe8e66, the code before the scaffold).
"""
import sys

import torch

from nnunet_ext.benchmark.scaffold_equivalence import compare, golden, record

if __name__ == "__main__":
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "golden":   # golden RECORD JSON: the digests/statistics tests/unit/test_scaffold.py compares against
        import json
        g = golden(torch.load(path, weights_only=False))
        with open(sys.argv[3], "w") as f:   # one line per registry entry
            f.write("{\n" + ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in g.items()) + "\n}\n")
    elif cmd == "save":
        torch.save(record(), path)
    else:
        sys.exit(compare(torch.load(path, weights_only=False), sys.argv[3] if len(sys.argv) > 3 else None))
