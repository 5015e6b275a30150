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

/**
 * Token tiles per band of a longest-first work order (both GPU backends' block-sparse forward and
 * dX): within a band the lines (block rows or columns) run longest first, each over the band's
 * token tiles, so that the work still running at the end is short while the band's activations
 * stay in L2. `bandTokens` is each backend's measured band (0: the plain order); `forcedTiles`
 * (a tuning's bandTiles) overrides it. 0 means the plain order.
 */
export function orderBand(bandTokens: number, tileTokens: number, tiles: number, forcedTiles?: number): number {
  const band = forcedTiles ?? (bandTokens > 0 ? Math.round(bandTokens / tileTokens) : 0);
  return band > 0 ? Math.min(tiles, band) : 0;
}
