/**
 * Stream-K schedules (as CUTLASS's stream-K GEMM) for the 2-D tile SDDMM: every item runs over the
 * same token steps at a cost per step of its passes (blocks / 16, rounded up), and the items'
 * (item, token step) work, laid end to end, is cut into one equal share per CTA. A share may end
 * one item and begin the next, so a CTA runs one to a few segments, each a token range of one
 * item whose partial sums go to the slot numbered by its place among that item's segments. One
 * CTA per multiprocessor then finishes in one wave, where whole token chunks per item leave the
 * last wave part empty (67 items of an H100's 132 multiprocessors took 15 chunks and 15 partial
 * sums: 8 waves of 0.533 items' time, against 0.508 balanced; NOTES 39-41).
 */
export interface StreamKSchedule {
  /** CTA c runs segments segPtr[c] .. segPtr[c + 1] - 1. */
  segPtr: Int32Array;
  /** Per segment: item, first token step, token steps, partial-sum slot. */
  segs: Int32Array;
  /** Partial-sum slots: the most segments of one item. */
  slots: number;
}

/**
 * Cuts items of `passes[i]` cost per step, `steps` token steps each, into `ctas` shares. A segment
 * is at least `minSteps` steps (the pipeline's fill and the store of the item's blocks are paid
 * per segment) unless it ends its item; the shares then differ by up to that much.
 */
export function streamKSchedule(passes: ArrayLike<number>, steps: number, ctas: number, minSteps: number): StreamKSchedule {
  if (ctas < 1 || steps < 1) throw new Error(`streamKSchedule: ${ctas} CTAs and ${steps} token steps (expected at least one of each)`);
  const total = Array.from(passes).reduce((a, p) => a + p * steps, 0);
  const segPtr = new Int32Array(ctas + 1);
  const segs: number[] = [];
  const pieces = new Int32Array(passes.length);
  let item = 0;
  let at = 0; // token step within the item
  let done = 0; // work handed out so far
  for (let c = 0; c < ctas; c++) {
    const target = c === ctas - 1 ? total : ((c + 1) * total) / ctas;
    while (item < passes.length && done < target - 1e-9) {
      const cost = passes[item];
      const left = steps - at;
      let take = Math.max(1, Math.round((target - done) / cost));
      if (take < minSteps) take = minSteps;
      if (take >= left || left - take < minSteps || c === ctas - 1) take = left;
      segs.push(item, at, take, pieces[item]++);
      done += take * cost;
      at += take;
      if (at < steps) break; // a segment that does not end its item ends the share (rounding aside)
      [item, at] = [item + 1, 0];
    }
    segPtr[c + 1] = segs.length / 4;
  }
  return { segPtr, segs: Int32Array.from(segs), slots: Math.max(1, ...pieces) };
}
