/**
 * The short-row kernels (softmax, layer norm and their backward over rows up to 512) in both of
 * their forms: a row per subgroup where the device's subgroups passed the probe, and rows of 32
 * invocations reducing in workgroup memory (the tuning's rowSubgroups off), each against the
 * CPU backend on the same inputs. Core's shared suites cover the default form on every backend.
 */
import * as assert from 'uvu/assert';
import { backends, setBackend, tensor, type Backend, type Tensor } from '@sparsegrad/core';
import * as sg from '@sparsegrad/core';
import '@sparsegrad/webgpu';
import type { WebGPUBackend } from '@sparsegrad/webgpu';
import { probeRowSubgroups } from '../src/subgroups.ts';
import { assertClose, randomArray, deviceSuite } from '../../core/test/helpers.ts';

const status = (await backends()).find((b) => b.name === 'webgpu');
const test = deviceSuite('WebGPU short rows', status);
const gpu: Backend | null = status?.available ? await setBackend('webgpu') : null;
const cpu = await setBackend('cpu');

/** Softmax (plain and causal, with its gradient) and layer norm (with its gradients) of fixed inputs on `be`. */
async function outputs(be: Backend): Promise<ArrayLike<number>[]> {
  const T = (d: ArrayLike<number>, shape: number[]) => tensor(Float32Array.from(d), shape, { backend: be });
  const out: ArrayLike<number>[] = [];
  // 37 rows: a partial workgroup of rows in both forms; rows of 1, 7, 256 and 1000.
  for (const n of [1, 7, 256, 1000]) {
    const x = T(randomArray(37 * n, n, 3), [37, n]).requiresGrad_();
    const y = x.softmax();
    y.mul(T(randomArray(37 * n, n + 1), [37, n]))
      .sum()
      .backward();
    out.push(await y.toArray(), await x.grad!.toArray(), await x.logSoftmax().toArray());
    const g = T(randomArray(n, 5), [n]).requiresGrad_();
    const b = T(randomArray(n, 6), [n]).requiresGrad_();
    const xl = T(randomArray(37 * n, 7, 2), [37, n]).requiresGrad_();
    const z: Tensor = sg.layerNorm(xl, n, g, b);
    z.backward(T(randomArray(37 * n, 8), [37, n]));
    out.push(await z.toArray(), await xl.grad!.toArray(), await g.grad!.toArray());
  }
  out.push(await sg.causalSoftmax(T(randomArray(3 * 50 * 50, 9, 4), [3, 50, 50])).toArray());
  return out;
}

{
  // Read only inside test bodies, which do not run when the suite is skipped.
  const be = gpu as Backend;
  test('the subgroup probe answers 0 or a size dividing the workgroup', async () => {
    const size = await probeRowSubgroups((be as WebGPUBackend).context);
    assert.ok(size === 0 || (size >= 4 && 256 % size === 0), `probe answered ${size}`);
  });

  test('softmax and layer norm (and their gradients) match the CPU backend in both short-row forms', async () => {
    const ref = await outputs(cpu);
    const ctx = (be as WebGPUBackend).context;
    for (const rowSubgroups of [false, true]) {
      const previous = ctx.setTuning({ rowSubgroups });
      try {
        const got = await outputs(be);
        got.forEach((g, i) => assertClose(g, ref[i], 2e-5, `output ${i}, rowSubgroups ${rowSubgroups}`));
      } finally {
        ctx.setTuning(previous);
      }
    }
  });
}

test.run();
