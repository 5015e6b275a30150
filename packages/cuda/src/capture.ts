/**
 * The CUDA backend's KernelCapture (core's backend.ts): CUDA graphs through the driver API. A
 * recording is a stream capture (relaxed mode: the caching allocator may call cuMemAlloc meanwhile)
 * instantiated once; a replay is one cuGraphLaunch. Spans note the kernel nodes their launches
 * became (the capture's last node after each launch); updating a span re-runs its host code with
 * every launch turned into cuGraphExecKernelNodeSetParams on the next of those nodes, while copies
 * and fills (constant in the spans core issues) are left as recorded. Allocations go through
 * core's CapturePool, which the caching allocator consults (allocator.ts).
 */
import { type CapturePool, KernelRecorder, type RecordingBase } from '@sparsegrad/core/backend';
import type { Addon } from './native.ts';

/** A recording: its instantiated graph and, per span, the graph nodes its launches became. */
interface Recording extends RecordingBase<number[]> {
  graph: number;
}

export class CudaCapture extends KernelRecorder<Recording, number[]> {
  /** The nodes of the span being recorded. */
  private spanNodes: number[] | null = null;
  /** While a span is updated: its graph, its nodes and the next to replace. */
  private updating: { graph: number; nodes: number[]; at: number } | null = null;

  constructor(
    private readonly raw: Addon,
    releaseBlock: (ptr: number, bytes: number) => void,
  ) {
    super(releaseBlock);
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

  replay(recording: number): void {
    this.raw.graphLaunch(this.get(recording).graph);
  }

  protected open(pool: CapturePool): Recording {
    this.raw.captureBegin();
    return { graph: -1, pool, spans: [] };
  }
  protected spanStart(): void {
    this.spanNodes = [];
  }
  protected spanEnd(): number[] {
    const nodes = this.spanNodes ?? [];
    this.spanNodes = null;
    return nodes;
  }
  protected close(r: Recording): void {
    try {
      r.graph = this.raw.captureEnd();
    } catch (e) {
      throw new Error(`cuda: capture: ${(e as Error).message}`);
    }
  }
  protected cancel(): void {
    this.spanNodes = null;
    this.raw.captureAbort();
  }
  protected updateStart(r: Recording, nodes: number[]): void {
    this.updating = { graph: r.graph, nodes, at: 0 };
  }
  protected updateEnd(nodes: number[]): void {
    const launched = this.updating!.at;
    this.updating = null;
    if (launched !== nodes.length) throw new Error(`capture: a span launched ${launched} kernels when updated, ${nodes.length} when recorded`);
  }
  protected discard(r: Recording): void {
    this.raw.graphRelease(r.graph);
  }
}
