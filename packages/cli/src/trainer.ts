import { autocast, captureStep, crossEntropy, memory, noGrad, resetPeakMemory, tidy, type HalfDType, type Tensor } from '@sparsegrad/core';
import { AdamW, GradScaler, clipGradNorm, decayGroups, warmupCosine } from '@sparsegrad/nn';
import { loadCheckpointWeights, saveCheckpoint, type LoadedCheckpoint, type RunConfig, type TrainingState } from './checkpoint.ts';
import { BatchSampler, type Dataset } from './data.ts';
import type { Trainee } from './model.ts';
import type { Progress } from './progress.ts';

export interface TrainOptions {
  label: string;
  config: RunConfig;
  trainee: Trainee;
  data: Dataset;
  progress: Progress;
  /** Where checkpoints go; none are written without it. */
  out?: string;
  checkpointEvery?: number;
  resume?: LoadedCheckpoint;
  /** Polled after every step (Ctrl-C). */
  shouldStop?: () => boolean;
  /** Stop (with a checkpoint) after this many steps of this invocation, as if interrupted. */
  stopAfter?: number;
  /** Mixed precision: the forward and loss under autocast to this dtype (float16 with dynamic loss scaling). */
  autocast?: HalfDType | null;
  /** Record the training step once and replay it (captureStep), where the step allows it. */
  capture?: boolean;
}

export interface TrainResult {
  step: number;
  interrupted: boolean;
  evalLoss: number;
  msPerStep: number;
  tokensPerSec: number;
  peakBytes: number;
  history: TrainingState['history'];
  checkpoint?: string;
}

/**
 * Mean loss over `count` batches, in eval mode and without gradients (one batch alive at a time).
 * The losses add up on the device and are read once, so the batches queue without a wait each.
 */
async function evaluate(
  trainee: Trainee,
  count: number,
  batch: (i: number) => [Tensor, Tensor],
  dispose: boolean,
  loss: (x: Tensor, y: Tensor) => Tensor,
): Promise<number> {
  const model = trainee.model;
  model.eval();
  let total: Tensor | null = null;
  try {
    for (let i = 0; i < count; i++) {
      const [x, y] = batch(i);
      const l = loss(x, y);
      // A new tensor each time: a captured step's output is overwritten by its next call.
      const sum: Tensor = noGrad(() => (total ? total.add(l) : l.add(0)));
      total?.dispose();
      l.dispose();
      total = sum;
      if (dispose) {
        x.dispose();
        y.dispose();
      }
    }
    return (await total!.item()) / count;
  } finally {
    total?.dispose();
    model.train();
  }
}

/** One step of a captured training step on the sampler's next batch. */
function capturedStep(step: ReturnType<typeof captureStep<[Tensor, Tensor], Tensor>>, sampler: BatchSampler): Tensor {
  const [x, y] = sampler.sample();
  try {
    return step.run(x, y);
  } finally {
    x.dispose();
    y.dispose();
  }
}

/** Trains with AdamW, warmup + cosine LR, gradient clipping, periodic evaluation and checkpoints. */
export async function train(opts: TrainOptions): Promise<TrainResult> {
  const { config, trainee, data, progress } = opts;
  const t = config.training;
  const seq = config.model.seqLen;
  const model = trainee.model;
  // No weight decay on biases, LayerNorm weights and embeddings (nanoGPT's and most Transformer recipes).
  const accum = t.gradAccum ?? 1;
  const optimizer = new AdamW(decayGroups(model, t.weightDecay, { decay: t.decayParams }), {
    lr: t.lr,
    weightDecay: t.weightDecay,
    betas: [0.9, t.beta2 ?? 0.999],
  });
  const schedule = warmupCosine({ lr: t.lr, warmupSteps: Math.min(t.warmup, t.steps - 1), totalSteps: t.steps, minLr: t.minLr });
  const sampler = new BatchSampler(data.train, t.batch, seq, t.seed + 1);
  const evalSampler = new BatchSampler(data.valid, t.batch, seq, t.seed + 2);
  // Each eval batch is `accum` micro-batches, like a training step: the same windows as one batch
  // of accum x batch sequences, without holding them at once.
  const random = t.evalMode === 'random';
  const evalCount = t.evalBatches * accum;
  // Fixed: the same held-out batches every time, drawn once. Random: fresh batches of each split
  // at every evaluation from samplers of their own (their positions are checkpointed).
  const evalBatches = random ? [] : Array.from({ length: evalCount }, () => evalSampler.sample());
  const trainSplitSampler = new BatchSampler(data.train, t.batch, seq, t.seed + 3);
  const lowPrecision = opts.autocast ?? false;
  // float16's narrow range needs the loss scaled so that small gradients do not flush to zero
  // (bfloat16 has float32's range and needs none), as torch.cuda.amp.GradScaler.
  const scaler = lowPrecision === 'float16' ? new GradScaler() : null;
  // The whole step of one batch, recorded once and replayed where the step is one call on one
  // batch (gradient accumulation and loss scaling read back or loop on the host: they run eagerly).
  /** The model's loss on a batch, the forward under autocast where mixed precision is on. */
  const forwardLoss = (x: Tensor, y: Tensor) => autocast(lowPrecision, () => crossEntropy(model.forward(x), y));
  const oneBatchStep = (x: Tensor, y: Tensor) =>
    tidy(() => {
      const l = forwardLoss(x, y);
      l.backward();
      clipGradNorm(model.parameters(), t.clip).dispose();
      optimizer.step();
      optimizer.zeroGrad();
      return l;
    });
  const captured = opts.capture && accum === 1 && !scaler ? captureStep(oneBatchStep) : null;
  let announced = false;
  // Evaluation: the loss of a batch without gradients (recorded too with --capture).
  const batchLoss = (x: Tensor, y: Tensor) => noGrad(() => tidy(() => forwardLoss(x, y)));
  const capturedEval = opts.capture ? captureStep(batchLoss) : null;
  const evalBatchLoss = capturedEval ? (x: Tensor, y: Tensor) => capturedEval.run(x, y) : batchLoss;
  if (opts.capture && !captured) progress.log('--capture: runs eagerly with --grad-accum > 1 or --precision fp16');
  let state: TrainingState = { step: 0, samplerPosition: sampler.position, history: [] };
  if (opts.resume) {
    await loadCheckpointWeights(opts.resume, trainee, optimizer);
    state = opts.resume.state;
    sampler.position = state.samplerPosition;
    if (random && state.evalPositions) [evalSampler.position, trainSplitSampler.position] = state.evalPositions;
  }
  const evaluateNow = async (): Promise<{ evalLoss: number; trainSplitLoss?: number }> => {
    if (!random) return { evalLoss: await evaluate(trainee, evalCount, (i) => evalBatches[i], false, evalBatchLoss) };
    const evalLoss = await evaluate(trainee, evalCount, () => evalSampler.sample(), true, evalBatchLoss);
    const trainSplitLoss = await evaluate(trainee, evalCount, () => trainSplitSampler.sample(), true, evalBatchLoss);
    return { evalLoss, trainSplitLoss };
  };
  const startStep = state.step;
  const save = async () => {
    if (!opts.out) return undefined;
    state.samplerPosition = sampler.position;
    if (random) state.evalPositions = [evalSampler.position, trainSplitSampler.position];
    return saveCheckpoint(opts.out, config, trainee, optimizer, state);
  };

  resetPeakMemory(model.parameters()[0].backend);
  progress.start(opts.label, t.steps, startStep);
  const stepTimes: number[] = [];
  const began = performance.now();
  let interrupted = false;
  let evalLoss = NaN;
  let checkpoint: string | undefined;
  try {
    while (state.step < t.steps) {
      const t0 = performance.now();
      optimizer.lr = schedule(state.step);
      const loss = captured
        ? capturedStep(captured, sampler)
        : tidy(() => {
            // `accum` micro-batches, each a backward of its share of the mean loss: the gradients add
            // up to those of one batch of accum x batch sequences (the sampler draws the same windows).
            let total: Tensor | null = null;
            for (let micro = 0; micro < accum; micro++) {
              const [x, y] = sampler.sample();
              const l = forwardLoss(x, y);
              const share = accum > 1 ? l.div(accum) : l;
              (scaler ? scaler.scaleLoss(share) : share).backward();
              total = total ? total.add(l.detach()) : l.detach();
            }
            const l = accum > 1 ? total!.div(accum) : total!;
            if (!scaler) {
              clipGradNorm(model.parameters(), t.clip).dispose();
              optimizer.step();
              optimizer.zeroGrad();
            }
            return l;
          });
      if (scaler) {
        // Unscaled before clipping (the norm is of the true gradients); a step whose gradients
        // overflowed is skipped and the scale backs off.
        if (await scaler.unscale(optimizer)) tidy(() => clipGradNorm(model.parameters(), t.clip).dispose());
        await scaler.step(optimizer);
        scaler.update();
        optimizer.zeroGrad();
      }
      const lossValue = await loss.item();
      loss.dispose();
      if (captured?.captured && !announced) {
        announced = true;
        progress.log(`--capture: the training step is recorded and replayed from step ${state.step + 1} on`);
      }
      if (!Number.isFinite(lossValue)) throw new Error(`training diverged at step ${state.step + 1} (loss ${lossValue}); try a smaller --lr`);
      stepTimes.push(performance.now() - t0);
      state.step++;
      const entry: TrainingState['history'][number] = { step: state.step, trainLoss: lossValue };
      state.history.push(entry);
      const elapsedSec = (performance.now() - began) / 1000;
      progress.update(
        { step: state.step, total: t.steps, loss: lossValue, tokensPerSec: (accum * t.batch * seq * (state.step - startStep)) / elapsedSec, elapsedSec },
        startStep,
      );
      // Let the event loop run: CPU readbacks resolve as microtasks, so without this Ctrl-C and
      // the progress bar's timers would never get a turn.
      await new Promise((resolve) => setImmediate(resolve));
      const stopping = (opts.shouldStop?.() ?? false) || (opts.stopAfter !== undefined && state.step - startStep >= opts.stopAfter && state.step < t.steps);
      if (state.step % t.evalEvery === 0 || state.step === t.steps || stopping) {
        const losses = await evaluateNow();
        evalLoss = losses.evalLoss;
        entry.evalLoss = evalLoss;
        if (losses.trainSplitLoss !== undefined) entry.trainSplitLoss = losses.trainSplitLoss;
        const trainSplit = losses.trainSplitLoss === undefined ? '' : ` (training split ${losses.trainSplitLoss.toFixed(4)})`;
        progress.log(`${opts.label} step ${state.step}: eval loss ${evalLoss.toFixed(4)}${trainSplit}`);
      }
      if (stopping) {
        interrupted = true;
        break;
      }
      if (opts.checkpointEvery && state.step % opts.checkpointEvery === 0 && state.step < t.steps) checkpoint = await save();
    }
    if (Number.isNaN(evalLoss)) evalLoss = (await evaluateNow()).evalLoss;
    checkpoint = (await save()) ?? checkpoint;
  } finally {
    progress.stop();
    if (captured?.reason && opts.capture) progress.log(`--capture: the step ran eagerly: ${captured.reason}`);
    captured?.dispose();
    capturedEval?.dispose();
    optimizer.dispose();
    for (const [x, y] of evalBatches) {
      x.dispose();
      y.dispose();
    }
  }
  // Steady-state speed: the first steps include JIT and allocation warm-up.
  const steady = stepTimes.length > 4 ? stepTimes.slice(2) : stepTimes;
  const msPerStep = steady.reduce((a, b) => a + b, 0) / Math.max(1, steady.length);
  return {
    step: state.step,
    interrupted,
    evalLoss,
    msPerStep,
    tokensPerSec: (accum * t.batch * seq * 1000) / msPerStep,
    peakBytes: memory(model.parameters()[0].backend).peakBytes,
    history: state.history,
    checkpoint,
  };
}
