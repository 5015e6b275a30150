/**
 * How many chunks to split a reduction of `length` steps into, for `items` work items on a device
 * that runs `slots` of them at once: the count s that minimises waves(items x s) / s, the run
 * time in units of the whole length, fewest on ties (each chunk adds a partial result to sum),
 * with chunks of at least `minChunk` steps and at most `maxSplits` of them. The GPU backends split
 * k of dense products (WebGPU) and the tokens of the SDDMM (CUDA) this way.
 */
export function waveSplits(items: number, length: number, slots: number, minChunk: number, maxSplits = Number.POSITIVE_INFINITY): number {
  const time = (s: number) => Math.ceil((items * s) / slots) / s;
  let best = 1;
  for (let s = 2; s <= Math.min(maxSplits, Math.floor(length / minChunk)); s++) if (time(s) < time(best) - 1e-9) best = s;
  return best;
}
