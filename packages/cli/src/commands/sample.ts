import { noGrad, tensor, tidy } from '@sparsegrad/core';
import { int, num, parse } from '../args.ts';
import { loadCheckpointWeights, readCheckpoint } from '../checkpoint.ts';
import { CliError } from '../errors.ts';
import { buildModel } from '../model.ts';
import { chooseBackend } from '../setup.ts';
import { tokenizerFromSpec } from '../tokenizer.ts';

export const SAMPLE_HELP = `sparsegrad sample --checkpoint DIR --prompt TEXT [--tokens 200] [--temperature 0.8] [--top-k 40] [--seed 0] [--backend auto]
  Loads the newest checkpoint in DIR (written by train or compare) on any backend and continues the prompt.`;

/** Picks a token from logits with temperature and top-k, using a seeded xorshift generator. */
export function pickToken(logits: Float32Array | Int32Array, temperature: number, topK: number, rand: () => number): number {
  if (temperature === 0) return logits.indexOf(Math.max(...logits));
  const order = [...logits.keys()].sort((a, b) => logits[b] - logits[a]).slice(0, topK > 0 ? topK : logits.length);
  const m = logits[order[0]];
  const weights = order.map((i) => Math.exp((logits[i] - m) / temperature));
  let r = rand() * weights.reduce((a, b) => a + b, 0);
  for (let k = 0; k < order.length; k++) {
    r -= weights[k];
    if (r <= 0) return order[k];
  }
  return order[order.length - 1];
}

export async function sampleCommand(argv: string[], log: (s: string) => void, write: (s: string) => void): Promise<number> {
  const values = parse('sample', argv, {
    checkpoint: { type: 'string' },
    prompt: { type: 'string', default: '' },
    tokens: { type: 'string', default: '200' },
    temperature: { type: 'string', default: '0.8' },
    'top-k': { type: 'string', default: '40' },
    seed: { type: 'string', default: '0' },
    backend: { type: 'string', default: 'auto' },
    help: { type: 'boolean', short: 'h', default: false },
  });
  if (values.help) {
    log(SAMPLE_HELP);
    return 0;
  }
  if (!values.checkpoint) throw new CliError('sample needs --checkpoint DIR');
  const tokens = int(values, 'tokens');
  const temperature = num(values, 'temperature', (v) => v >= 0, 'a non-negative number');
  const topK = int(values, 'top-k', 0);
  const ckpt = readCheckpoint(values.checkpoint as string); // before loading a backend (see trainCommand)
  await chooseBackend(values.backend as string, log);
  const tokenizer = tokenizerFromSpec(ckpt.config.tokenizer);
  const trainee = await buildModel(ckpt.config.model, ckpt.config.patches, 0, { allowUnmatched: true });
  await loadCheckpointWeights(ckpt, trainee);
  const model = trainee.model.eval();
  log(`loaded ${ckpt.dir} (step ${ckpt.state.step}, ${model.parameterCount().toLocaleString('en-US')} parameters)`);
  let state = int(values, 'seed', 0) + 0x9e3779b9;
  const rand = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 4294967296;
  };
  const ids = [...tokenizer.encode(values.prompt as string)];
  if (ids.length === 0) ids.push(tokenizer.encode('\n')[0] ?? 0);
  write(values.prompt as string);
  const seqLen = ckpt.config.model.seqLen;
  for (let i = 0; i < tokens; i++) {
    const window = ids.slice(-seqLen);
    const logits = noGrad(() =>
      tidy(() => {
        const out = model.forward(tensor(Int32Array.from(window), [1, window.length], { dtype: 'int32' }));
        return out.slice(1, window.length - 1).reshape(-1);
      }),
    );
    const next = pickToken(await logits.toArray(), temperature, topK, rand);
    logits.dispose();
    ids.push(next);
    write(tokenizer.decode([next]));
  }
  write('\n');
  return 0;
}
