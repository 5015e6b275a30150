/**
 * The kernel variants of the WebGPU backend that benchmarks and tests compare. The defaults are
 * what measured fastest on an H100 (each use cites its measurement); product code reads the
 * backend's tuning, never the environment. Benchmarks pass variants as `--variants key=a,b`
 * (parseTuning), tests through withTuning.
 */
import { parseTuningEntry } from '@sparsegrad/core/backend';

export interface WebGPUTuning {
  /** Dispatches in the first batch after a read: the submission ramp (context.ts); 256 turns it off. */
  firstBatch: number;
  /** Halve the 128 x 128 dense tile where the output fills half of it (tiles.ts fitOutput). */
  fitOutput: boolean;
  /** Large dense tiles split a long k into waves (tiles.ts denseTiling); off: the earlier rule. */
  splitLarge: boolean;
  /** Workgroups of the 128 x 128 tile taken as one wave when k is split (tiles.ts waveSplits). */
  waveSlots: number;
  /** Token tiles per band of the block-sparse work order for every block size (0: plain); undefined: by block size. */
  bandTiles?: number;
  /** Union tiles for the block-sparse forward and dX: by the measured rule, or forced. */
  unionTiles: 'auto' | 'on' | 'off';
  /** Union tiles group members that share activation blocks. */
  unionCluster: boolean;
  /** Row kernels put several short rows in a workgroup (laneRowKernel); off: a workgroup per row. */
  laneRows: boolean;
  /** ...a row per subgroup where the device allows; off: a tree in workgroup memory. */
  rowSubgroups: boolean;
  /** Sums over a few long rows run by vec4 columns. */
  fewRows: boolean;
  /** The one-block-wide forward and dX run the straight loop (NOTES 45). */
  straightLoop: boolean;
  /** Workgroups the SDDMM splits its tokens for (tiles.ts SDDMM_TARGET_GROUPS). */
  sddmmGroups: number;
  /** The SDDMM's blocks per workgroup come from a block row or a block column: by the layout's shape, or forced. */
  sddmmAxis: 'auto' | 'row' | 'column';
  /**
   * Tile shapes by kernel, for tuning: "matmul=16,16,8,8,8;bsr32=32,8,4,4,8;sddmm32=8,8,4,4,8;
   * union16=16,16,8,8,8;unionGradInput16=16,8,8,8,8" (wm, wn, tm, tn, bk); empty: the tuned ones.
   */
  tiles: string;
}

export const DEFAULT_WEBGPU_TUNING: Readonly<WebGPUTuning> = Object.freeze({
  firstBatch: 16,
  fitOutput: true,
  splitLarge: true,
  waveSlots: 264,
  bandTiles: undefined,
  unionTiles: 'auto',
  unionCluster: true,
  laneRows: true,
  rowSubgroups: true,
  fewRows: true,
  straightLoop: true,
  sddmmGroups: 4096,
  sddmmAxis: 'auto',
  tiles: '',
});

/** One tuning entry from its text (benchmarks' `--variants key=value`): booleans as 0/1, modes and numbers as written. */
export function parseTuning(key: string, value: string): Partial<WebGPUTuning> {
  return parseTuningEntry(
    {
      backend: 'webgpu',
      defaults: DEFAULT_WEBGPU_TUNING,
      modes: { unionTiles: ['auto', 'on', 'off'], sddmmAxis: ['auto', 'row', 'column'] },
      integers: ['bandTiles'],
    },
    key,
    value,
  );
}
