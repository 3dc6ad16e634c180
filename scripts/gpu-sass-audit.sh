#!/usr/bin/env bash
# Runs ON the GPU machine (it needs cuobjdump from the CUDA toolkit): for every kernel of the cubins given that
# waits on the kernel before it (griddepcontrol.wait, SASS ACQBULK), its global loads (LDG) counted between
# waits in program order: "before|between|...|after". A kernel that issues loads before its wait (the GEMV's
# first weights, the decode attention's first K/V round, the routers' weights) must show them in front of that
# wait; session 19 found ptxas had moved every GEMV's loads behind it (PERF-NOTES).
# Usage: bash scripts/gpu-sass-audit.sh /tmp/zinfer-cuda-cache/*.cubin > sass-audit.txt
for f in "$@"; do
  cuobjdump -sass "$f" 2>/dev/null | awk '
    function out() { if (name != "" && waits > 0) print name, seg n }
    /Function :/ { out(); name = $3; seg = ""; n = 0; waits = 0 }
    /ACQBULK/ { seg = seg n "|"; n = 0; waits++ }
    /LDG/ { n++ }
    END { out() }'
done
