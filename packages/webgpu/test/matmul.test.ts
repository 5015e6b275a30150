/**
 * Dense products on the tiles the shared suites' small shapes never reach: batches with enough
 * output tiles for the 128 x 128 tile, halved where the output is at most 64 wide or tall
 * (tiles.ts's fitOutput), with A row-major and transposed; each against a float64 product.
 */
import * as assert from 'uvu/assert';
import { backends, setBackend, tensor, type Backend } from '@sparsegrad/core';
import '@sparsegrad/webgpu';
import { randomArray, deviceSuite } from '../../core/test/helpers.ts';

const status = (await backends()).find((b) => b.name === 'webgpu');
const test = deviceSuite('WebGPU dense tiles', status);
const gpu: Backend | null = status?.available ? await setBackend('webgpu') : null;

{
  // Read only inside test bodies, which do not run when the suite is skipped.
  const be = gpu as Backend;
  test('batched products 64 wide and 64 tall match float64, A row-major and transposed', async () => {
    // 128 products: 256 tiles of 128 x 64 (or 64 x 128), the tile the rule picks for such outputs.
    const batch = 128;
    for (const [m, n, k] of [
      [256, 64, 256],
      [64, 256, 256],
      [256, 48, 72],
    ]) {
      for (const transposed of [false, true]) {
        const a = randomArray(batch * m * k, m + n + k + 1);
        const b = randomArray(batch * k * n, m + n + k + 2);
        // A transposed: stored as [batch, k, m] and viewed as its transpose.
        const A = transposed
          ? tensor(Float32Array.from(a), [batch, k, m], { backend: be }).transpose(1, 2)
          : tensor(Float32Array.from(a), [batch, m, k], { backend: be });
        const B = tensor(Float32Array.from(b), [batch, k, n], { backend: be });
        const got = await A.matmul(B).toArray();
        let worst = 0;
        for (let p = 0; p < batch; p += 9) {
          for (let i = 0; i < m; i++) {
            for (let j = 0; j < n; j++) {
              let s = 0;
              for (let q = 0; q < k; q++) s += (transposed ? a[(p * k + q) * m + i] : a[(p * m + i) * k + q]) * b[(p * k + q) * n + j];
              worst = Math.max(worst, Math.abs(got[(p * m + i) * n + j] - s) / (1 + Math.abs(s)));
            }
          }
        }
        assert.ok(worst < 1e-4, `[${m}, ${k}] x [${k}, ${n}] x ${batch}${transposed ? ', A transposed' : ''}: error ${worst}`);
      }
    }
  });
}

test.run();
