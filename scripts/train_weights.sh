#!/usr/bin/env bash
# Train the published weights (issue 7) on this 2-core CPU machine, exactly as docs/training.md records.
#
#   bash scripts/train_weights.sh DATA_DIR OUT_DIR [MODEL ...]
#
# DATA_DIR holds the ensembles made by the project's own commands:
#   issm-emulator generate pig-melt --melt-rates 0:70:2 --years 20 --resolution 3km --out DATA_DIR/pig-melt
#   issm-emulator generate pig-melt --melt-rates 0:70:2 --years 20 --resolution 2km --out DATA_DIR/pig-melt-2km
#   issm-emulator generate pig-melt --melt-rates 0:70:2 --years 20 --resolution 5km --out DATA_DIR/pig-melt-5km
#   issm-emulator generate north79-calving --out DATA_DIR/north79-calving
#   issm-emulator generate north79-calving --thresholds 62.5e3:187.5e3:25e3 --split validation=112500 \
#       --out DATA_DIR/north79-calving-dense      (only egcn-step-north79's last stage uses it)
# Each MODEL is <arch>-<mode>-<scenario> (default: all twelve). Checkpoints, histories and logs go to OUT_DIR.
# Widths and epochs are chosen so that each training takes minutes on 2 CPU cores (see docs/training.md);
# the seed paper's 5 x 128 networks trained for 100-200 epochs on 8 GPUs.
set -euo pipefail
data=${1:?DATA_DIR}; out=${2:?OUT_DIR}; shift 2
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
  models=(egcn-step-pig egcn-direct-pig gcn-step-pig gcn-direct-pig cnn-step-pig cnn-direct-pig
          egcn-step-north79 egcn-direct-north79 gcn-step-north79 gcn-direct-north79 cnn-step-north79
          cnn-direct-north79)
fi
# epochs of egcn-direct-pig: where its published training was stopped (the learning-rate schedule is per
# epoch, so a run with this --epochs reproduces it exactly)
EGCN_DIRECT_PIG_EPOCHS=${EGCN_DIRECT_PIG_EPOCHS:-182}
# ... then it is fine-tuned on the 2, 3 and 5 km ensembles together (one checkpoint for every Pine Island
# mesh between 2 and 5 km) for this many epochs (where that training was stopped)
EGCN_DIRECT_PIG_MESH_EPOCHS=${EGCN_DIRECT_PIG_MESH_EPOCHS:-40}
# egcn-step-pig: 12 epochs, then 10 more from that checkpoint at a lower learning rate (same noise and targets),
# then 12 more from that one at a lower rate again (another noise seed), all on 3 km; then the 2, 3 and 5 km
# ensembles together through the 3 km processing mesh, first with interpolated, then with fitted targets
# (docs/training.md says why)
EGCN_STEP_PIG_MORE_EPOCHS=${EGCN_STEP_PIG_MORE_EPOCHS:-10}
EGCN_STEP_PIG_STAGE3_EPOCHS=${EGCN_STEP_PIG_STAGE3_EPOCHS:-12}
EGCN_STEP_PIG_MESH_EPOCHS=${EGCN_STEP_PIG_MESH_EPOCHS:-20}
# ... and then with fitted targets (--fit-targets) for this many epochs (where that training was stopped;
# the learning-rate schedule is per epoch, so a run with this --epochs reproduces it exactly)
EGCN_STEP_PIG_FIT_EPOCHS=${EGCN_STEP_PIG_FIT_EPOCHS:-3}
# ... and then at a lower learning rate, keeping the epoch with the best validation rollouts
# (--select rollout), for this many epochs (where it was stopped)
EGCN_STEP_PIG_STAGE6_EPOCHS=${EGCN_STEP_PIG_STAGE6_EPOCHS:-1}
# ... and then on the states of its own 2 km rollouts as well (--rollout-inputs 0.5 --rollout-on 2 km,
# rolled out again every 3 epochs), keeping the epoch with the best validation rollouts, for this many epochs
EGCN_STEP_PIG_ROLLOUT_EPOCHS=${EGCN_STEP_PIG_ROLLOUT_EPOCHS:-1}
# egcn-direct-north79 (time-decoded): 800 epochs (learning rate x 0.995 per epoch), then 600 more from that
# checkpoint at 5e-4 (x 0.997 per epoch)
EGCN_DIRECT_NORTH79_EPOCHS=${EGCN_DIRECT_NORTH79_EPOCHS:-800}
EGCN_DIRECT_NORTH79_MORE_EPOCHS=${EGCN_DIRECT_NORTH79_MORE_EPOCHS:-600}
# egcn-step-north79: 8 epochs, then 20 more for rollouts (SSA-noise targets, as egcn-step-pig), then six
# more stages (epochs:learning rate:decay:noise (m):seed:patience:rotated strides), each from the one before
EGCN_STEP_NORTH79_MORE_EPOCHS=${EGCN_STEP_NORTH79_MORE_EPOCHS:-20}
EGCN_STEP_NORTH79_STAGES=${EGCN_STEP_NORTH79_STAGES:-"30:3e-4:0.9:10:1:8: 40:2e-4:0.95:10:2:12:rotate
  40:2e-4:0.95:20:3:12:rotate 80:2e-4:0.97:20:4:20:rotate 120:2e-4:0.98:20:5:30:rotate
  150:2e-4:0.985:20:6:40:rotate"}
# ... and a last one on the 79N ensemble and its dense calving ensemble together (--select rollout)
EGCN_STEP_NORTH79_DENSE_EPOCHS=${EGCN_STEP_NORTH79_DENSE_EPOCHS:-40}
# the Pine Island GCN and CNN baselines: trained until the validation loss flattens
PIG_BASELINE_EPOCHS=${PIG_BASELINE_EPOCHS:-30}
# the GCN and CNN direct networks (increments; one sample per run, so more, cheaper epochs)
PIG_DIRECT_BASELINE_EPOCHS=${PIG_DIRECT_BASELINE_EPOCHS:-40}
NORTH79_DIRECT_BASELINE_EPOCHS=${NORTH79_DIRECT_BASELINE_EPOCHS:-300}
mkdir -p "$out"
bin=$(dirname "$0")/../.venv/bin/issm-emulator
for name in "${models[@]}"; do
  IFS=- read -r arch mode scenario <<< "$name"
  case $scenario in
    pig) ens=$data/pig-melt; epochs=$PIG_BASELINE_EPOCHS; stride=24  # 28 training runs, 10 of 240 outputs each
         # the default weights (egcn-step-pig): 20 outputs per run, 12 epochs
         if [ "$arch-$mode" = egcn-step ]; then stride=12; epochs=12; fi ;;
    north79) ens=$data/north79-calving; stride=6; epochs=8 ;;  # 8 training runs, 20 of 120 outputs each
    *) echo "unknown scenario in $name" >&2; exit 2 ;;
  esac
  decay=0.9; patience=4; extra=(); datas=(--data "$ens"); batch=4
  # the Pine Island GCN and CNN: the 2, 3 and 5 km ensembles together, every 24th monthly output per epoch,
  # shifted by one each epoch (so 24 epochs see all 240)
  if [ "$scenario" = pig ] && [ "$arch" != egcn ]; then
    patience=8; extra=(--rotate-stride)
    datas=(--data "$data/pig-melt" --data "$data/pig-melt-2km" --data "$data/pig-melt-5km")
  fi
  # the default step weights train for rollouts: smooth 10 m thickness noise on the inputs, the stress
  # balance of the perturbed geometry (solved by fem) as the target
  if [ "$arch-$mode-$scenario" = egcn-step-pig ]; then extra=(--input-noise 10 --noise-targets ssa); fi
  # the GCN and CNN direct networks predict the change since the initial state (--decoder auto: increment,
  # nn/increment.py): one sample is one run, its kept outputs one stacked pass, so they train in small
  # batches of runs for more epochs, on every 24th output per epoch (shifted by one each epoch)
  if [ "$mode" = direct ] && [ "$arch" != egcn ]; then
    batch=2; extra=(--rotate-stride); stride=24
    if [ "$scenario" = pig ]; then epochs=$PIG_DIRECT_BASELINE_EPOCHS; decay=0.95; patience=12
    else epochs=$NORTH79_DIRECT_BASELINE_EPOCHS; decay=0.99; patience=30; fi
  fi
  # the EGCN's direct mode is time-decoded (one graph pass per run, all 240 monthly outputs as targets):
  # many cheap epochs instead of few expensive ones
  if [ "$arch-$mode-$scenario" = egcn-direct-pig ]; then stride=1; epochs=$EGCN_DIRECT_PIG_EPOCHS; decay=0.99; patience=40; fi
  # the same for 79N (8 training runs of 120 outputs: about a second per epoch)
  if [ "$arch-$mode-$scenario" = egcn-direct-north79 ]; then
    stride=1; epochs=$EGCN_DIRECT_NORTH79_EPOCHS; decay=0.995; patience=100
  fi
  target=$out/$name.pt
  if [ "$name" = egcn-direct-pig ]; then target=$out/egcn-direct-pig-3km.pt; fi
  case $name in egcn-step-pig|egcn-step-north79|egcn-direct-north79) target=$out/$name-stage1.pt ;; esac
  echo "== $name: $(date -u +%FT%TZ)"
  "$bin" train "${datas[@]}" --model "$arch" --mode "$mode" --out "$target" --epochs "$epochs" \
    --hidden 64 --layers 4 --batch-size "$batch" --lr 2e-3 --lr-decay "$decay" --time-stride "$stride" \
    --patience "$patience" --seed 0 --device cpu --no-progress --resume "${extra[@]}"
  if [ "$name" = egcn-direct-pig ]; then
    echo "== $name on the 2, 3 and 5 km meshes: $(date -u +%FT%TZ)"
    "$bin" train --data "$data/pig-melt" --data "$data/pig-melt-2km" --data "$data/pig-melt-5km" \
      --model egcn --mode direct --init "$target" --out "$out/$name.pt" --epochs "$EGCN_DIRECT_PIG_MESH_EPOCHS" \
      --batch-size 4 --lr 5e-4 --lr-decay 0.97 --time-stride 1 --patience 10 --seed 0 --device cpu \
      --no-progress --resume
  fi
  if [ "$name" = egcn-step-pig ]; then
    echo "== $name, second stage: $(date -u +%FT%TZ)"
    "$bin" train --data "$ens" --model egcn --mode step --init "$target" --out "$out/$name-stage2.pt" \
      --epochs "$EGCN_STEP_PIG_MORE_EPOCHS" --batch-size 4 --lr 5e-4 --lr-decay 0.9 --time-stride 12 --patience 5 \
      --seed 0 --device cpu --no-progress --resume "${extra[@]}"
    echo "== $name, third stage: $(date -u +%FT%TZ)"
    "$bin" train --data "$ens" --model egcn --mode step --init "$out/$name-stage2.pt" --out "$out/$name-stage3.pt" \
      --epochs "$EGCN_STEP_PIG_STAGE3_EPOCHS" --batch-size 4 --lr 3e-4 --lr-decay 0.9 --time-stride 12 \
      --patience 5 --seed 1 --device cpu --no-progress --resume "${extra[@]}"
    echo "== $name on the 2, 3 and 5 km meshes through the 3 km processing mesh: $(date -u +%FT%TZ)"
    "$bin" train --data "$data/pig-melt" --data "$data/pig-melt-2km" --data "$data/pig-melt-5km" --processing-mesh \
      --processing-back p1 --model egcn --mode step --init "$out/$name-stage3.pt" --out "$out/$name-stage4.pt" \
      --epochs "$EGCN_STEP_PIG_MESH_EPOCHS" --batch-size 4 --lr 3e-4 --lr-decay 0.9 --time-stride 12 \
      --patience 5 --seed 2 --device cpu --no-progress --resume "${extra[@]}"
    echo "== $name on the 2, 3 and 5 km meshes with fitted targets: $(date -u +%FT%TZ)"
    "$bin" train --data "$data/pig-melt" --data "$data/pig-melt-2km" --data "$data/pig-melt-5km" --processing-mesh \
      --processing-back p1 --fit-targets --model egcn --mode step --init "$out/$name-stage4.pt" \
      --out "$out/$name-stage5.pt" --epochs "$EGCN_STEP_PIG_FIT_EPOCHS" --batch-size 4 --lr 2e-4 --lr-decay 0.9 \
      --time-stride 12 --patience 5 --seed 3 --device cpu --no-progress --resume "${extra[@]}"
    echo "== $name, fitted targets at a lower rate, kept by validation rollouts: $(date -u +%FT%TZ)"
    "$bin" train --data "$data/pig-melt" --data "$data/pig-melt-2km" --data "$data/pig-melt-5km" --processing-mesh \
      --processing-back p1 --fit-targets --select rollout --model egcn --mode step --init "$out/$name-stage5.pt" \
      --out "$out/$name-stage6.pt" --epochs "$EGCN_STEP_PIG_STAGE6_EPOCHS" --batch-size 4 --lr 5e-5 --lr-decay 0.9 \
      --time-stride 12 --patience 5 --seed 9 --device cpu --no-progress --resume "${extra[@]}"
    echo "== $name, also from the states of its own 2 km rollouts: $(date -u +%FT%TZ)"
    "$bin" train --data "$data/pig-melt" --data "$data/pig-melt-2km" --data "$data/pig-melt-5km" --processing-mesh \
      --processing-back p1 --fit-targets --select rollout --rollout-inputs 0.5 --rollout-on "$data/pig-melt-2km" \
      --rollout-refresh 3 --model egcn --mode step --init "$out/$name-stage6.pt" --out "$out/$name.pt" \
      --epochs "$EGCN_STEP_PIG_ROLLOUT_EPOCHS" --batch-size 4 --lr 5e-5 --lr-decay 0.9 --time-stride 12 \
      --patience 5 --seed 17 --device cpu --no-progress --resume "${extra[@]}"
  fi
  if [ "$name" = egcn-direct-north79 ]; then
    echo "== $name, second stage: $(date -u +%FT%TZ)"
    "$bin" train --data "$ens" --model egcn --mode direct --init "$target" --out "$out/$name.pt" \
      --epochs "$EGCN_DIRECT_NORTH79_MORE_EPOCHS" --batch-size 4 --lr 5e-4 --lr-decay 0.997 --time-stride 1 \
      --patience 100 --seed 1 --device cpu --no-progress --resume
  fi
  if [ "$name" = egcn-step-north79 ]; then
    echo "== $name, second stage: $(date -u +%FT%TZ)"
    "$bin" train --data "$ens" --model egcn --mode step --init "$target" --out "$out/$name-stage2.pt" \
      --epochs "$EGCN_STEP_NORTH79_MORE_EPOCHS" --batch-size 4 --lr 5e-4 --lr-decay 0.9 --time-stride 6 --patience 5 \
      --seed 0 --device cpu --no-progress --resume --input-noise 10 --noise-targets ssa
    prev=$out/$name-stage2.pt; k=3; stages=($EGCN_STEP_NORTH79_STAGES)
    for spec in "${stages[@]}"; do
      IFS=: read -r ep lr dec noise seed pat rot <<< "$spec"
      next=$out/$name-stage$k.pt
      echo "== $name, stage $k: $(date -u +%FT%TZ)"
      "$bin" train --data "$ens" --model egcn --mode step --init "$prev" --out "$next" --epochs "$ep" \
        --batch-size 4 --lr "$lr" --lr-decay "$dec" --time-stride 6 ${rot:+--rotate-stride} \
        --patience "$pat" --seed "$seed" --device cpu --no-progress --resume --input-noise "$noise" \
        --noise-targets ssa
      prev=$next; k=$((k + 1))
    done
    # the strongly calving thresholds weighed more: the dense ensemble (62.5-187.5 kPa, between the test
    # thresholds' neighbours) trains too, and the epoch is kept by the rollouts of the validation runs,
    # 112.5 kPa among them (docs/training.md)
    echo "== $name, stage $k, with the dense calving ensemble: $(date -u +%FT%TZ)"
    "$bin" train --data "$ens" --data "$data/north79-calving-dense" --model egcn --mode step --init "$prev" \
      --out "$out/$name.pt" --epochs "$EGCN_STEP_NORTH79_DENSE_EPOCHS" --batch-size 4 --lr 1e-4 --lr-decay 0.97 \
      --time-stride 6 --rotate-stride --patience 40 --seed 7 --device cpu --no-progress --resume \
      --input-noise 20 --noise-targets ssa --select rollout
  fi
done
