import { randn, setBackend, tidy } from '@sparsegrad/core';
import '@sparsegrad/webgpu';
await setBackend('webgpu');
const small = randn([64]);
for (let rep = 0; rep < 30; rep++) {
  const t0 = performance.now();
  const out = tidy(() => { let t = small; for (let i = 0; i < 1000; i++) t = t.add(1); return t; });
  const t1 = performance.now();
  await out.toArray();
  const t2 = performance.now();
  console.log(`encode ${((t1 - t0)).toFixed(1)} us/op, total ${((t2 - t0)).toFixed(1)} us/op`);
  out.dispose();
}
