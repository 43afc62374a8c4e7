#!/usr/bin/env bash
# The GPU measurements that no session has had a GPU for yet, as four complete commands that fit the
# device tool's 10-minute limit each. Run from the repository root on the lent machine, e.g.
#   run(command="bash benchmarks/gpu_runbook.sh decode")      # then: train, rollouts1, rollouts64
# Results (JSON and logs) go to $OUT (or ./gpu_results); copy the numbers into benchmarks/RESULTS.md.
set -euo pipefail
case "${1:-}" in decode|train|rollouts1|rollouts64|grpo|fsdp) ;; *)
  echo "usage: bash benchmarks/gpu_runbook.sh decode|train|rollouts1|rollouts64|grpo|fsdp" >&2; exit 2 ;;
esac
export PYTHONPATH=.
out="${OUT:-gpu_results}"
mkdir -p "$out"
python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())" | tee "$out/versions.txt"
case "${1:-}" in
  decode)    # hf back-end: eager vs static cache + compile; target >= 40% of the bound at batch 1, >= 25% at 64
    timeout 560 python benchmarks/hf_decode.py --preset qwen2.5-7b --batches 1,16,64 --json "$out/hf_decode.json" 2>&1 | tee "$out/hf_decode.log" ;;
  train)     # dail vs nll; targets >= 0.65x nll throughput, <= 1.2x nll memory, 16k and 32k fit
    timeout 560 python benchmarks/train_step.py --preset qwen2.5-7b --tokens 2048,8192,16384,32768 --naive --json "$out/train_step.json" 2>&1 | tee "$out/train_step.log" ;;
  rollouts1)   # mixed-policy engine at batch 1, fixed shapes + CUDA graphs: plain, the authors' scheme, lockstep
    timeout 560 python benchmarks/mixed_rollouts.py --preset qwen2.5-7b --batches 1 --new-tokens 1000 --static --compile \
      --configs unfused,lockstep --targets 0.9 --json "$out/mixed_rollouts_b1.json" 2>&1 | tee "$out/mixed_rollouts_b1.log" ;;
  rollouts64)  # the same at batch 64, with adaptive drafting (its verify shapes: 1, 2, 4, 8, 16)
    timeout 560 python benchmarks/mixed_rollouts.py --preset qwen2.5-7b --batches 64 --new-tokens 1000 --static --compile \
      --configs unfused,lockstep,auto --targets 0.9 --json "$out/mixed_rollouts_b64.json" 2>&1 | tee "$out/mixed_rollouts_b64.log" ;;
  grpo)      # GRPO step vs TRL's GRPOTrainer on a Qwen2.5-1.5B shape (the image lacks trl: carry its wheels in .whl)
    timeout 560 python benchmarks/grpo_step.py --preset qwen2.5-1.5b --steps 2 --prompts 8 --group 8 --max-tokens 256 \
      --json "$out/grpo_step.json" 2>&1 | tee "$out/grpo_step.log" ;;
  fsdp)      # train --fsdp on the GPU (NCCL, one process: the code path, not a speed-up): LoRA DAIL, full-weight GRPO
    for m in dail grpo; do
      extra=""; [ "$m" = grpo ] && extra="--lora-r 0 --prompts-per-step 2 --group-size 2 --max-tokens 16 --data $out/p.jsonl"
      [ "$m" = grpo ] && python -c "import json; print(json.dumps({'problem_id': 'a', 'problem': 'What is 2+3?', 'answer': '5'}))" > "$out/p.jsonl"
      [ "$m" = dail ] && python -c "import json; print(json.dumps({'problem_id': 'a', 'problem': 'What is 2+3?', 'solution': '5', 'trace': '2+3=5', 'waypoints': ['2'], 'answer': '5'}))" > "$out/d.jsonl"
      [ "$m" = dail ] && extra="--data $out/d.jsonl"
      [ "$m" = grpo ] && extra="$extra --backend hf"
      timeout 270 torchrun --standalone --nproc-per-node 1 -m dail_harness train --method $m --model tiny-random \
        --fsdp --max-steps 4 --save-every 2 $extra --out "$out/fsdp-$m" 2>&1 | tee "$out/fsdp-$m.log"
    done ;;
esac
