/**
 * The engine's lazy submission: batches start small after a read and double up to their limit
 * (context.ts). A chain of dependent ops whose every dispatch carries its own uniform parameter
 * (a scalar add) crosses the ramp's boundaries and two reads in the middle, which restart it; the
 * result must equal the float64 sum of the same chain.
 */
import * as assert from 'uvu/assert';
import { backends, setBackend, tensor, zeros, type Backend } from '@sparsegrad/core';
import type { WebGPUBackend } from '@sparsegrad/webgpu';
import '@sparsegrad/webgpu';
import { deviceSuite } from '../../core/test/helpers.ts';

const status = (await backends()).find((b) => b.name === 'webgpu');
const test = deviceSuite('WebGPU batching', status);
const gpu: Backend | null = status?.available ? await setBackend('webgpu') : null;

{
  // Read only inside test bodies, which do not run when the suite is skipped.
  const be = gpu as Backend;
  test('a chain of 700 scalar adds across batch boundaries and reads matches float64', async () => {
    const start = [0.5, -1.25, 3, 7.75, -2, 0, 1.5, 9];
    let x = tensor(Float32Array.from(start), [8], { backend: be });
    const expected = start.slice();
    for (let i = 0; i < 700; i++) {
      // Distinct small dyadic steps: exact in float32, and a wrong or stale parameter shows.
      const c = ((i % 13) - 6) / 64 + (i % 2 ? 1 / 1024 : 0);
      const next = x.add(c);
      x.dispose();
      x = next;
      for (let j = 0; j < expected.length; j++) expected[j] += c;
      if (i === 9 || i === 300) {
        const mid = await x.toArray();
        for (let j = 0; j < expected.length; j++)
          assert.ok(Math.abs(mid[j] - expected[j]) < 1e-4, `after ${i + 1} adds, element ${j}: ${mid[j]} against ${expected[j]}`);
      }
    }
    const got = await x.toArray();
    for (let j = 0; j < expected.length; j++)
      assert.ok(Math.abs(got[j] - expected[j]) < 1e-4, `after 700 adds, element ${j}: ${got[j]} against ${expected[j]}`);
    x.dispose();
  });

  test('an allocation larger than the device can bind is an Error naming its size, and the backend keeps working', async () => {
    const limit = (be as WebGPUBackend).context.device.limits.maxStorageBufferBindingSize;
    const size = Math.floor(limit / 4) + 1024;
    assert.throws(
      () => zeros([size], { backend: be }),
      (e: Error) =>
        new RegExp(`webgpu: alloc: a tensor of ${size.toLocaleString('en-US')} elements .* is larger than the largest buffer this device can bind`).test(
          e.message,
        ),
    );
    assert.equal([...(await tensor([1, 2], undefined, { backend: be }).add(1).toArray())], [2, 3]);
  });
}

test.run();
