/**
 * The CUDA backend's KernelCapture (core's backend.ts): CUDA graphs through the driver API. A
 * recording is a stream capture (relaxed mode: the caching allocator may call cuMemAlloc meanwhile)
 * instantiated once; a replay is one cuGraphLaunch. Spans note the kernel nodes their launches
 * became (the capture's last node after each launch); updating a span re-runs its host code with
 * every launch turned into cuGraphExecKernelNodeSetParams on the next of those nodes, while copies
 * and fills (constant in the spans core issues) are left as recorded. Allocations go through
 * core's CapturePool, which the caching allocator consults (allocator.ts).
 */
import { CapturePool } from '@sparsegrad/core/backend';
import type { KernelCapture } from '@sparsegrad/core/backend';
import type { Addon } from './native.ts';

interface Recording {
  graph: number;
  pool: CapturePool;
  spans: number[][];
}

export class CudaCapture implements KernelCapture {
  readonly pools: CapturePool[] = [];
  private mode: 'eager' | 'record' | 'update' = 'eager';
  private current: { pool: CapturePool; spans: number[][] } | null = null;
  private spanNodes: number[] | null = null;
  private updating: { graph: number; nodes: number[]; at: number; pool: CapturePool } | null = null;
  private readonly recordings = new Map<number, Recording>();
  private nextId = 1;

  constructor(
    private readonly raw: Addon,
    private readonly releaseBlock: (ptr: number, bytes: number) => void,
  ) {}

  /** The pool allocations go to now, if any. */
  get pool(): CapturePool | null {
    return this.mode === 'record' ? this.current!.pool : (this.updating?.pool ?? null);
  }
  keeps(ptr: number, bytes: number): boolean {
    return this.pools.some((p) => p.give(ptr, bytes));
  }

  /** The addon as the backend sees it: launches recorded or turned into node updates, by mode. */
  wrap(): Addon {
    const raw = this.raw;
    return {
      ...raw,
      launch: (id, gx, gy, gz, bx, by, bz, shared, args, offsets) => {
        if (this.mode === 'update') {
          const u = this.updating!;
          const node = u.nodes[u.at++];
          if (node === undefined) throw new Error('capture: a span launched more kernels when updated than when recorded');
          raw.graphSetKernel(u.graph, node, id, gx, gy, gz, bx, by, bz, shared, args, offsets);
          return;
        }
        raw.launch(id, gx, gy, gz, bx, by, bz, shared, args, offsets);
        if (this.spanNodes) this.spanNodes.push(raw.captureNode());
      },
      // Fills and copies in the spans core issues do not change between replays.
      memset32: (...a) => void (this.mode === 'update' || raw.memset32(...a)),
      copy: (...a) => void (this.mode === 'update' || raw.copy(...a)),
      gemm: (...a) => {
        if (this.mode === 'update') throw new Error('capture: a span cannot update a cuBLAS product');
        raw.gemm(...a);
      },
      // While recording, data uploads at once (outside the graph) into a block the pool keeps as a constant.
      upload: (ptr, data) => (this.mode === 'record' ? raw.uploadSync(ptr, data) : raw.upload(ptr, data)),
      read: (ptr, bytes) => {
        if (this.mode !== 'eager') throw new Error('cuda: read: not while a step is being recorded');
        return raw.read(ptr, bytes);
      },
    };
  }

  get recording(): boolean {
    return this.mode === 'record';
  }

  begin(): void {
    if (this.mode !== 'eager') throw new Error('capture: a recording is already in progress');
    this.current = { pool: new CapturePool(), spans: [] };
    this.pools.push(this.current.pool);
    this.raw.captureBegin();
    this.mode = 'record';
  }
  beginSpan(): void {
    this.spanNodes = [];
    this.current!.pool.beginSpan();
  }
  endSpan(): number {
    this.current!.spans.push(this.spanNodes ?? []);
    this.spanNodes = null;
    return this.current!.pool.endSpan();
  }
  end(): number {
    const c = this.current!;
    this.mode = 'eager';
    this.current = null;
    c.pool.end();
    let graph: number;
    try {
      graph = this.raw.captureEnd();
    } catch (e) {
      this.drop(c.pool);
      throw new Error(`cuda: capture: ${(e as Error).message}`);
    }
    const id = this.nextId++;
    this.recordings.set(id, { graph, pool: c.pool, spans: c.spans });
    return id;
  }
  abort(): void {
    const c = this.current;
    this.mode = 'eager';
    this.current = null;
    this.spanNodes = null;
    this.raw.captureAbort();
    if (c) this.drop(c.pool);
  }
  updateSpan(recording: number, span: number, issue: () => void): void {
    const r = this.get(recording);
    const nodes = r.spans[span];
    this.mode = 'update';
    this.updating = { graph: r.graph, nodes, at: 0, pool: r.pool };
    try {
      r.pool.updating(span, issue);
    } finally {
      this.mode = 'eager';
    }
    const launched = this.updating.at;
    this.updating = null;
    if (launched !== nodes.length) throw new Error(`capture: a span launched ${launched} kernels when updated, ${nodes.length} when recorded`);
  }
  replay(recording: number): void {
    this.raw.graphLaunch(this.get(recording).graph);
  }
  release(recording: number): void {
    const r = this.get(recording);
    this.recordings.delete(recording);
    this.raw.graphRelease(r.graph);
    this.drop(r.pool);
  }

  private get(recording: number): Recording {
    const r = this.recordings.get(recording);
    if (!r) throw new Error(`capture: no recording ${recording} (released?)`);
    return r;
  }
  private drop(pool: CapturePool): void {
    this.pools.splice(this.pools.indexOf(pool), 1);
    pool.release(this.releaseBlock);
  }
}
