/**
 * The small GPT training step the step benchmarks time (6 layers, d_model 512, 8 heads, sequence
 * 256, vocabulary 200): forward, backward, gradient clipping at norm 1, AdamW, the MLPs patched
 * to 32x32 block-sparse when density < 1. Mirrored by benchmarks/torch_gpt_step.py.
 */
import { autocast, captureStep, crossEntropy, manualSeed, tensor, tidy, type HalfDType, type Tensor } from '@sparsegrad/core';
import { AdamW, BlockSparseModelPatcher, GPT, type GPTConfig, clipGradNorm } from '@sparsegrad/nn';

export const GPT_SEQ = 256;
export const GPT_VOCAB = 200;

export interface GptStep {
  /** One step; host is the time to issue it, wall includes waiting for the loss. */
  run(): Promise<{ host: number; wall: number }>;
  dispose(): void;
}

/**
 * nanoGPT's shakespeare_char model (issue 26's benchmark): 6 layers, 6 heads, 384 wide, 65
 * characters, dropout 0.2, no biases, exact GELU, tied embeddings; batch 64 of 256 characters.
 */
export const NANOGPT: GPTConfig = {
  vocabSize: 65,
  seqLen: 256,
  dModel: 384,
  heads: 6,
  layers: 6,
  dropout: 0.2,
  bias: false,
  gelu: 'none',
  tieEmbeddings: true,
  initStd: 0.02,
};

/**
 * `lowPrecision`: the forward and loss under autocast to that dtype (float32 masters, as
 * torch.autocast); `capture`: the step recorded and replayed by captureStep after its warm-up;
 * `config`: the model (this file's 512-wide GPT by default, or e.g. NANOGPT).
 */
export async function createGptStep(
  batch: number,
  density: number,
  lowPrecision: HalfDType | false = false,
  capture = false,
  config: GPTConfig = { vocabSize: GPT_VOCAB, seqLen: GPT_SEQ, dModel: 512, heads: 8, layers: 6 },
): Promise<GptStep> {
  const [seq, vocab] = [config.seqLen, config.vocabSize];
  manualSeed(0);
  const model = new GPT(config);
  if (density < 1) await new BlockSparseModelPatcher().addPattern(String.raw`layers\.[0-9]+\.mlp\.fc[12]`, { density, blockSize: 32 }).patchModel(model);
  const opt = new AdamW(model.parameters(), { lr: 1e-3 });
  const tokens = Int32Array.from({ length: batch * (seq + 1) }, (_, i) => (i * 7919) % vocab);
  const x = tensor(
    Int32Array.from({ length: batch * seq }, (_, i) => tokens[Math.floor(i / seq) * (seq + 1) + (i % seq)]),
    [batch, seq],
  );
  const y = tensor(
    Int32Array.from({ length: batch * seq }, (_, i) => tokens[Math.floor(i / seq) * (seq + 1) + (i % seq) + 1]),
    [batch, seq],
  );
  const eager = (xs: Tensor, ys: Tensor) =>
    tidy(() => {
      const l = autocast(lowPrecision, () => crossEntropy(model.forward(xs), ys));
      l.backward();
      clipGradNorm(model.parameters(), 1).dispose();
      opt.step();
      opt.zeroGrad();
      return l;
    });
  const captured = capture ? captureStep(eager) : null;
  return {
    async run() {
      const t0 = performance.now();
      const loss = captured ? captured.run(x, y) : eager(x, y);
      const host = performance.now() - t0;
      await loss.item();
      loss.dispose();
      return { host, wall: performance.now() - t0 };
    },
    dispose() {
      if (captured?.reason) console.log(`  (not captured: ${captured.reason})`);
      captured?.dispose();
      opt.dispose(); // its moments would otherwise count in the next variant's peak memory
      model.dispose();
      x.dispose();
      y.dispose();
    },
  };
}
