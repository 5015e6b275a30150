import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync, cpSync, statSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../bin/sparsegrad.mjs', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'sparsegrad-cli-'));

/** A small deterministic English-like text file, so the tests need no corpus and run fast. */
const words = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'and', 'dog', 'ran', 'to', 'big', 'red', 'house', 'in', 'sun'];
let s = 7;
const rand = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
const sentences = Array.from(
  { length: 1500 },
  () => `${Array.from({ length: 4 + Math.floor(rand() * 6) }, () => words[Math.floor(rand() * words.length)]).join(' ')}.`,
);
const DATA = join(dir, 'tiny.txt');
writeFileSync(DATA, sentences.join('\n'));
const EMPTY = join(dir, 'empty.txt');
writeFileSync(EMPTY, '');

const TINY = [
  '--data',
  DATA,
  '--layers',
  '1',
  '--d-model',
  '32',
  '--heads',
  '2',
  '--seq',
  '16',
  '--batch',
  '4',
  '--eval-every',
  '3',
  '--eval-batches',
  '2',
  '--backend',
  'cpu',
];

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, FORCE_COLOR: '0' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** A failing run: non-zero exit and exactly one line on stderr matching `pattern`. */
function fails(pattern: RegExp, ...args: string[]) {
  const r = run(...args);
  assert.is.not(r.code, 0, `exit code for ${args.join(' ')}`);
  // Dawn prints limit notices on stderr when a WebGPU device is created; they are not our errors.
  const lines = r.err
    .trim()
    .split('\n')
    .filter((l) => !l.includes('npm warn') && !l.startsWith('Warning: '));
  assert.is(lines.length, 1, `one error line, got: ${r.err}`);
  assert.match(lines[0], pattern);
}

const test = suite('sparsegrad command');

test('backends lists every backend with availability', () => {
  const r = run('backends');
  assert.is(r.code, 0);
  assert.match(r.out, /^cpu\s+available/m);
  assert.match(r.out, /^webgpu\s+(available|unavailable\s+\S+)/m);
  assert.match(r.out, /^cuda\s+(available|unavailable\s+\S+)/m);
});

test('train prints backend, tree and patch report, writes a checkpoint; sample and resume use it', () => {
  const out = join(dir, 'run');
  const r = run('train', ...TINY, '--steps', '6', '--sparsify', String.raw`layers\.[0-9]+\.mlp\.fc1`, '--density', '0.5', '--block-size', '16', '--out', out);
  assert.is(r.code, 0, r.err);
  assert.match(r.out, /backend: cpu/);
  assert.match(r.out, /model \([\d,]+ parameters\):/);
  assert.match(r.out, /layers\.0\.mlp\.fc1: 32 -> 128, density 0\.5, 16x16 blocks, parameters 4,224 -> 2,176/);
  assert.match(r.out, /unigram baseline: \d\.\d{4} nats\/token/);
  assert.match(r.out, /step 6\/6\s+loss \d/); // plain progress lines when stdout is not a TTY
  assert.match(r.out, /train step 6: eval loss \d/);
  assert.ok(existsSync(join(out, 'checkpoint.json')) && existsSync(join(out, 'step-000006', 'model.safetensors')));
  const sample = run('sample', '--checkpoint', out, '--prompt', 'the cat', '--tokens', '30', '--backend', 'cpu');
  assert.is(sample.code, 0, sample.err);
  assert.match(sample.out, /loaded .*step-000006 \(step 6/);
  assert.ok(sample.out.trim().split('\n').pop()!.startsWith('the cat') && sample.out.trim().split('\n').pop()!.length >= 37);
  // refusing to overwrite a checkpoint without --resume
  const before = readFileSync(join(out, 'step-000006', 'model.safetensors'));
  fails(/already holds a checkpoint; pass --resume/, 'train', ...TINY, '--steps', '6', '--out', out);
  assert.equal(readFileSync(join(out, 'step-000006', 'model.safetensors')), before);
});

test('resuming reproduces an uninterrupted run exactly, dense and block-sparse', () => {
  const SPARSE = ['--sparsify', String.raw`layers\.[0-9]+\.mlp\.fc[12]`, '--density', '0.5', '--block-size', '16'];
  for (const [name, extra] of [
    ['dense', []],
    ['sparse', SPARSE],
  ] as const) {
    const straight = join(dir, `straight-${name}`);
    const split = join(dir, `split-${name}`);
    assert.is(run('train', ...TINY, ...extra, '--steps', '8', '--out', straight).code, 0);
    const first = run('train', ...TINY, ...extra, '--steps', '8', '--stop-after', '4', '--out', split);
    assert.is(first.code, 0, first.err);
    assert.match(first.out, /stopped \(--stop-after\) at step 4/);
    const resumed = run('train', '--resume', '--out', split, '--backend', 'cpu');
    assert.is(resumed.code, 0, resumed.err);
    assert.match(resumed.out, /resuming .* at step 4 of 8/);
    assert.equal(readFileSync(join(split, 'step-000008', 'model.safetensors')), readFileSync(join(straight, 'step-000008', 'model.safetensors')), name);
  }
});

test('compare writes report.md, metrics.json and loss plots, and prints the table', () => {
  const out = join(dir, 'compare');
  const r = run('compare', ...TINY, '--steps', '4', '--densities', '0.5,0.25', '--block-size', '16', '--out', out);
  assert.is(r.code, 0, r.err);
  assert.match(
    r.out,
    /\| variant \| parameters \| final eval loss \| vs dense \| tokens\/s \| ms\/step \| step speedup \| weights, grads, Adam \| peak memory \|/,
  );
  assert.match(r.out, /\| sparse 0\.25 \| [\d,]+ \| \d\.\d{4} \|/);
  const report = readFileSync(join(out, 'report.md'), 'utf8');
  assert.match(report, /Unigram baseline/);
  const metrics = JSON.parse(readFileSync(join(out, 'metrics.json'), 'utf8'));
  assert.equal(
    metrics.map((m: { name: string }) => m.name),
    ['dense', 'sparse 0.5', 'sparse 0.25'],
  );
  assert.ok(metrics[2].parameters < metrics[1].parameters && metrics[1].parameters < metrics[0].parameters);
  for (const m of metrics) assert.is(m.trainingStateBytes, 16 * m.parameters, 'fp32 weight, gradient and two AdamW moments per parameter');
  assert.match(readFileSync(join(out, 'loss.svg'), 'utf8'), /^<svg/);
  assert.equal([...readFileSync(join(out, 'loss.png')).subarray(1, 4)].map((c) => String.fromCharCode(c)).join(''), 'PNG');
});

test('bad input: one line, non-zero exit', () => {
  fails(/unknown command 'fly'/, 'fly');
  fails(/unknown --backend 'tpu'; expected one of auto, cpu, webgpu, cuda/, 'train', '--backend', 'tpu', '--data', DATA);
  const unavailable = run('backends').out.match(/^(\w+)\s+unavailable/m)?.[1];
  if (unavailable) fails(new RegExp(`--backend: backend '${unavailable}' is not available`), 'train', ...TINY, '--backend', unavailable);
  else console.log('  (every backend is available here: the unavailable-backend error is not exercised)');
  fails(/--sparsify \/layers\.\(\/ is not a valid regular expression/, 'train', ...TINY, '--sparsify', 'layers.(', '--density', '0.5');
  fails(
    /--sparsify \/nothing\\\.here\/ matches no module .* pass --allow-unmatched/,
    'train',
    ...TINY,
    '--steps',
    '1',
    '--sparsify',
    String.raw`nothing\.here`,
    '--density',
    '0.5',
    '--out',
    join(dir, 'x1'),
  );
  assert.is(
    run('train', ...TINY, '--steps', '1', '--sparsify', String.raw`nothing\.here`, '--density', '0.5', '--allow-unmatched', '--out', join(dir, 'x2')).code,
    0,
  );
  fails(/--density must be in \(0, 1\], got '1\.5'/, 'train', ...TINY, '--sparsify', 'head', '--density', '1.5');
  fails(/--d-model 30 is not divisible by --heads 4/, 'train', '--data', DATA, '--d-model', '30', '--heads', '4');
  fails(
    /'layers\.0\.mlp\.fc1' is Linear\(48 -> 192\); both sizes must be multiples of the block size 32/,
    'train',
    ...TINY,
    '--d-model',
    '48',
    '--sparsify',
    String.raw`layers\.0\.mlp\.fc1`,
    '--density',
    '0.5',
    '--out',
    join(dir, 'x3'),
  );
  fails(/--data .*missing\.txt: cannot read it \(ENOENT\)/, 'train', '--data', join(dir, 'missing.txt'));
  fails(/--data .*empty\.txt is empty/, 'train', '--data', EMPTY);
  fails(/--steps must be an integer >= 1, got 'many'/, 'train', '--data', DATA, '--steps', 'many');
  fails(/train: Unknown option '--colour'/, 'train', '--colour');
  fails(/is not a sparsegrad checkpoint \(no checkpoint\.json\)/, 'sample', '--checkpoint', dir);
});

test('nanoGPT options: --grad-accum 2 of --batch 2 trains as --batch 4; --val-fraction; model options; bad values', () => {
  const rest = TINY.filter((a, i) => a !== '--batch' && TINY[i - 1] !== '--batch');
  const losses = (out: string) => [...out.matchAll(/(?:step \d+\/\d+\s+loss|eval loss) (\d+\.\d+)/g)].map((m) => m[1]);
  const whole = run('train', ...rest, '--batch', '4', '--steps', '3', '--out', join(dir, 'accum-1'));
  const accum = run('train', ...rest, '--batch', '2', '--grad-accum', '2', '--steps', '3', '--out', join(dir, 'accum-2'));
  assert.is(whole.code, 0, whole.err);
  assert.is(accum.code, 0, accum.err);
  assert.ok(losses(whole.out).length >= 4, whole.out);
  assert.equal(losses(accum.out), losses(whole.out), 'the same windows, the same gradients: the same train and eval losses');

  const heldOut = (out: string) => {
    const m = out.match(/-> ([\d,]+) char tokens .*; ([\d,]+) held out/)!;
    return [Number(m[1].replace(/,/g, '')), Number(m[2].replace(/,/g, ''))];
  };
  const tenth = run('train', ...TINY, '--steps', '1', '--val-fraction', '0.1', '--out', join(dir, 'val-10'));
  assert.is(tenth.code, 0, tenth.err);
  const [tokens, held] = heldOut(tenth.out);
  assert.is(held, tokens - Math.floor(tokens * 0.9));

  const params = (out: string) => Number(out.match(/model \(([\d,]+) parameters\)/)![1].replace(/,/g, ''));
  const plain = run('train', ...TINY, '--steps', '1', '--out', join(dir, 'opts-0'));
  const options = ['--no-bias', '--tie-embeddings', '--gelu', 'exact', '--init-std', '0.02', '--beta2', '0.99', '--min-lr', '1e-4'];
  const tuned = run('train', ...TINY, '--steps', '2', ...options, '--out', join(dir, 'opts-1'));
  assert.is(tuned.code, 0, tuned.err);
  assert.ok(params(tuned.out) < params(plain.out), `${params(tuned.out)} < ${params(plain.out)}`);
  assert.match(tuned.out, /GELU\(none\)/);
  assert.match(tuned.out, /no bias/);
  // A resumed run keeps them; contradicting one is refused.
  fails(
    /--gelu tanh contradicts the checkpoint, which was trained with none/,
    'train',
    '--resume',
    '--out',
    join(dir, 'opts-1'),
    '--gelu',
    'tanh',
    '--steps',
    '3',
  );
  const resumed = run('train', '--resume', '--out', join(dir, 'opts-1'), '--steps', '3', '--backend', 'cpu');
  assert.is(resumed.code, 0, resumed.err);

  // --eval-mode random: fresh batches of both splits at each evaluation, and a resumed run draws
  // the ones an uninterrupted run would have.
  const randomEval = ['--eval-mode', 'random', '--steps', '6'];
  const straight = run('train', ...TINY, ...randomEval, '--out', join(dir, 'eval-random'));
  assert.is(straight.code, 0, straight.err);
  const evals = (out: string) => [...out.matchAll(/step (\d+): eval loss (\d+\.\d+) \(training split (\d+\.\d+)\)/g)].map((m) => m.slice(1).join(' '));
  assert.is(evals(straight.out).length, 2, straight.out);
  assert.is.not(evals(straight.out)[0].split(' ')[1], evals(straight.out)[1].split(' ')[1]);
  const split = join(dir, 'eval-random-split');
  assert.is(run('train', ...TINY, ...randomEval, '--stop-after', '3', '--out', split).code, 0);
  const second = run('train', '--resume', '--out', split, '--backend', 'cpu');
  assert.is(second.code, 0, second.err);
  assert.equal(evals(second.out), evals(straight.out).slice(1), 'the resumed run evaluates on the same batches');
  fails(/--eval-mode must be fixed or random, got 'nanogpt'/, 'train', ...TINY, '--eval-mode', 'nanogpt');
  fails(/--grad-accum must be an integer >= 1, got '0'/, 'train', ...TINY, '--grad-accum', '0');
  fails(/--val-fraction must be in \(0, 1\), got '1'/, 'train', ...TINY, '--val-fraction', '1');
  fails(/--beta2 must be in \[0, 1\), got '1'/, 'train', ...TINY, '--beta2', '1');
  fails(/--gelu must be tanh or exact, got 'erf'/, 'train', ...TINY, '--gelu', 'erf');
  fails(/--init-std must be a positive number, got '-1'/, 'train', ...TINY, '--init-std', '-1');
});

test('--capture trains exactly as the eager step (dropout, a changing learning rate, mixed precision)', () => {
  const losses = (out: string) => [...out.matchAll(/(?:step \d+\/\d+\s+loss|eval loss) (\d+\.\d+)/g)].map((m) => m[1]);
  for (const precision of ['highest', 'bf16']) {
    const args = [...TINY, '--steps', '6', '--dropout', '0.1', '--precision', precision];
    const eager = run('train', ...args, '--out', join(dir, `eager-${precision}`));
    const captured = run('train', ...args, '--capture', '--out', join(dir, `captured-${precision}`));
    assert.is(eager.code, 0, eager.err);
    assert.is(captured.code, 0, captured.err);
    assert.not.match(captured.out, /ran eagerly/);
    assert.ok(losses(eager.out).length >= 8, eager.out);
    assert.equal(losses(captured.out), losses(eager.out), `${precision}: captured steps give the eager losses`);
  }
});

test('--precision bf16|fp16 train in mixed precision close to fp32; fp16 scales its loss and runs eagerly under --capture; bad values', () => {
  const evalLosses = (out: string) => [...out.matchAll(/eval loss (\d+\.\d+)/g)].map((m) => Number(m[1]));
  const base = [...TINY, '--steps', '6'];
  const fp32 = run('train', ...base, '--out', join(dir, 'p-fp32'));
  assert.is(fp32.code, 0, fp32.err);
  for (const precision of ['bf16', 'fp16']) {
    const r = run('train', ...base, '--precision', precision, '--capture', '--out', join(dir, `p-${precision}`));
    assert.is(r.code, 0, r.err);
    assert.match(r.out, precision === 'fp16' ? /dynamic loss scaling/ : /products in bfloat16 under autocast/);
    if (precision === 'fp16') assert.match(r.out, /--capture: runs eagerly with --grad-accum > 1 or --precision fp16/);
    const [a, b] = [evalLosses(r.out), evalLosses(fp32.out)];
    assert.ok(a.length >= 2 && a.length === b.length, r.out);
    // Six steps of a tiny model: the 16-bit products move the losses by far less than training does.
    a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) < 0.05, `${precision} eval loss ${v} against fp32 ${b[i]}`));
  }
  fails(/unknown --precision 'bf8'; expected one of highest, high, medium, bf16, fp16/, 'train', ...base, '--precision', 'bf8');
});

test('--out is checked before anything trains: a file, a path under a file, an uncreatable path', () => {
  const file = join(dir, 'a-file');
  writeFileSync(file, 'x');
  const early = (pattern: RegExp, out: string) => {
    const r = run('train', ...TINY, '--steps', '2', '--out', out);
    assert.is.not(r.code, 0);
    assert.match(r.err, pattern);
    assert.not.match(r.out, /backend:/, 'it failed before choosing a backend');
  };
  early(/--out .*a-file is a file, not a folder/, file);
  early(/--out .*a-file\/run is under .*a-file, which is a file/, join(file, 'run'));
  if (existsSync('/proc/self')) early(/--out \/proc\/sparsegrad-x: cannot create \/proc\/sparsegrad-x in \/proc \(E[A-Z]+\)/, '/proc/sparsegrad-x');
});

test("--out is locked while a run writes to it; a stale lock is taken over; a killed save's temporary folder is removed", () => {
  const out = join(dir, 'locked');
  mkdirSync(out);
  writeFileSync(join(out, '.lock'), JSON.stringify({ pid: process.pid, host: hostname(), started: 'now' }));
  fails(new RegExp(`--out .*locked is in use by another sparsegrad run \\(process ${process.pid} on`), 'train', ...TINY, '--steps', '2', '--out', out);
  const dead = spawnSync(process.execPath, ['-e', '0']).pid;
  writeFileSync(join(out, '.lock'), JSON.stringify({ pid: dead, host: hostname(), started: 'then' }));
  mkdirSync(join(out, '.step-000001.tmp-999999'));
  const r = run('train', ...TINY, '--steps', '2', '--out', out);
  assert.is(r.code, 0, r.err);
  assert.equal(
    readdirSync(out).filter((f) => f.startsWith('.')),
    [],
    'the lock is released and the temporary folder removed',
  );
});

test('--resume: contradicting flags are errors, changeable ones persist, --steps=N equals --steps N, a damaged state is refused', () => {
  const out = join(dir, 'resumable');
  assert.is(run('train', ...TINY, '--steps', '3', '--out', out).code, 0);
  fails(
    /--lr 0\.001 contradicts the checkpoint, which was trained with 0\.003; leave it out with --resume \(flags that may change: --steps, --eval-every/,
    'train',
    '--resume',
    '--out',
    out,
    '--steps',
    '5',
    '--lr',
    '1e-3',
    '--backend',
    'cpu',
  );
  fails(
    /--d-model 64 contradicts the checkpoint, which was trained with 32/,
    'train',
    '--resume',
    '--out',
    out,
    '--steps',
    '5',
    '--d-model',
    '64',
    '--backend',
    'cpu',
  );
  fails(
    /--sparsify contradicts the checkpoint, whose patterns are none \(a dense model\)/,
    'train',
    '--resume',
    '--out',
    out,
    '--steps',
    '5',
    '--sparsify',
    'head',
    '--density',
    '0.5',
    '--backend',
    'cpu',
  );
  const same = run(
    'train',
    '--resume',
    '--out',
    out,
    '--steps=5',
    '--eval-every=2',
    '--checkpoint-every',
    '7',
    '--lr',
    '3e-3',
    ...TINY.slice(0, 2),
    '--backend',
    'cpu',
  );
  assert.is(same.code, 0, same.err);
  assert.match(same.out, /resuming .* at step 3 of 5/);
  const config = JSON.parse(readFileSync(join(out, 'checkpoint.json'), 'utf8')).config;
  assert.equal([config.training.steps, config.training.evalEvery, config.checkpointEvery], [5, 2, 7], 'changed flags are stored');
  writeFileSync(join(out, 'step-000005', 'state.json'), '{}');
  fails(
    /checkpoint .*step-000005 is damaged: its state\.json does not hold the step \(5\)/,
    'train',
    '--resume',
    '--out',
    out,
    '--steps',
    '9',
    '--backend',
    'cpu',
  );
  assert.equal(
    readdirSync(out).filter((f) => f.startsWith('step-')),
    ['step-000005'],
    'no step-undefined folder',
  );
});

test('compare never writes into an earlier run and checks every variant before training any', () => {
  const out = join(dir, 'compare-again');
  mkdirSync(out);
  writeFileSync(join(out, 'report.md'), 'an earlier report');
  fails(/--out .*compare-again is not empty \(an earlier run\?\); compare never overwrites results/, 'compare', ...TINY, '--steps', '2', '--out', out);
  assert.is(readFileSync(join(out, 'report.md'), 'utf8'), 'an earlier report');
  const bad = run('compare', ...TINY, '--steps', '2', '--d-model', '48', '--block-size', '32', '--out', join(dir, 'compare-bad'));
  assert.is.not(bad.code, 0);
  assert.match(bad.err, /'layers\.0\.mlp\.fc1' is Linear\(48 -> 192\); both sizes must be multiples of the block size 32/);
  assert.not.match(bad.out, /== dense ==/, 'nothing trained');
});

test('data: bytes for --tokenizer byte, a warning for text that is not UTF-8, a huge file read only as far as needed', () => {
  const binary = join(dir, 'binary.bin');
  const bytes = Buffer.concat([Buffer.from([0xff, 0xfe, 0x80, 0xc3]), readFileSync(DATA)]);
  writeFileSync(binary, bytes);
  const tiny = TINY.filter((_, i) => i > 1);
  const asBytes = run('train', '--data', binary, '--tokenizer', 'byte', ...tiny, '--steps', '1', '--out', join(dir, 'bytes'));
  assert.is(asBytes.code, 0, asBytes.err);
  assert.match(
    asBytes.out,
    new RegExp(`data: .*binary\\.bin, ${bytes.length.toLocaleString('en-US')} bytes -> ${bytes.length.toLocaleString('en-US')} byte tokens`),
  );
  const asText = run('train', '--data', binary, ...tiny, '--steps', '1', '--out', join(dir, 'text'));
  assert.is(asText.code, 0, asText.err);
  assert.match(asText.out, /warning: --data .*binary\.bin is not valid UTF-8/);
  // 3 GB (sparse: no disk used) after the text: reading it whole would fail (V8's string limit).
  const huge = join(dir, 'huge.txt');
  cpSync(DATA, huge);
  truncateSync(huge, 3e9);
  const big = run('train', '--data', huge, ...tiny, '--max-chars', '30000', '--steps', '1', '--out', join(dir, 'huge'));
  assert.is(big.code, 0, big.err);
  assert.match(big.out, /data: .*huge\.txt, 30,000 characters/);
  rmSync(huge);
});

test('small things: --version, backends --help, negative numbers, the density actually built', () => {
  assert.match(run('--version').out, /^sparsegrad \d+\.\d+\.\d+/);
  assert.match(run('backends', '--help').out, /sparsegrad backends\n\s+Lists cpu, webgpu and cuda/);
  fails(/--steps must be an integer >= 1, got '-5'/, 'train', ...TINY, '--steps', '-5');
  fails(/--lr must be a positive number, got '-0\.1'/, 'train', ...TINY, '--lr', '-0.1');
  const r = run(
    'train',
    ...TINY,
    '--steps',
    '1',
    '--sparsify',
    String.raw`layers\.0\.mlp\.fc1`,
    '--density',
    '0.001',
    '--block-size',
    '16',
    '--out',
    join(dir, 'tiny-density'),
  );
  assert.is(r.code, 0, r.err);
  assert.match(r.out, /layers\.0\.mlp\.fc1: 32 -> 128, density 0\.0625 \(requested 0\.001: a whole number of blocks, at least one\), 16x16 blocks/);
});

test('broken checkpoints are reported, never loaded', () => {
  const good = join(dir, 'run');
  const truncated = join(dir, 'truncated');
  cpSync(good, truncated, { recursive: true });
  const model = join(truncated, 'step-000006', 'model.safetensors');
  truncateSync(model, statSync(model).size - 100);
  fails(/model\.safetensors is truncated/, 'sample', '--checkpoint', truncated, '--backend', 'cpu');
  // Weights of another model shape under this config
  const other = join(dir, 'other');
  assert.is(run('train', ...TINY, '--steps', '1', '--d-model', '64', '--out', other).code, 0);
  const mixed = join(dir, 'mixed');
  cpSync(good, mixed, { recursive: true });
  cpSync(join(other, 'step-000001', 'model.safetensors'), join(mixed, 'step-000006', 'model.safetensors'));
  fails(
    /checkpoint does not fit the model: loadStateDict: '.*' has shape \[.*\] \(float32\) in the state but \[.*\] \(float32\) in the model/,
    'sample',
    '--checkpoint',
    mixed,
    '--backend',
    'cpu',
  );
  writeFileSync(join(mixed, 'checkpoint.json'), '{ not json');
  fails(/checkpoint\.json is damaged \(not valid JSON\)/, 'sample', '--checkpoint', mixed);
});

for (const [signal, exitCode] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
  ['SIGHUP', 129],
] as const) {
  test(`${signal} (Ctrl-C, a container stop, a closed terminal) saves a last checkpoint and exits`, async () => {
    const out = join(dir, `interrupted-${signal}`);
    const child = spawn(process.execPath, [BIN, 'train', ...TINY, '--steps', '100000', '--eval-every', '1000', '--out', out], {
      env: { ...process.env, FORCE_COLOR: '0' },
    });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => {
      child.stdout.on('data', (d) => {
        stdout += d;
        if (/step \d+\/100000/.test(stdout) && !child.killed) child.kill(signal);
      });
      child.on('exit', (c) => resolve(c));
    });
    assert.is(code, exitCode, `exit code after ${signal}; stderr: ${stderr.slice(-500)}; stdout: ${stdout.slice(-300)}`);
    assert.match(stdout, /interrupted at step (\d+)/);
    const step = Number(stdout.match(/interrupted at step (\d+)/)![1]);
    const pointer = JSON.parse(readFileSync(join(out, 'checkpoint.json'), 'utf8'));
    assert.is(pointer.latest, `step-${String(step).padStart(6, '0')}`);
    assert.ok(existsSync(join(out, pointer.latest, 'model.safetensors')));
    assert.ok(!existsSync(join(out, '.lock')), 'the lock is released');
  });
}

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
