/**
 * The CPU backend's KernelCapture (backend.ts): recording a step's kernel calls as closures over
 * their arguments, replayed in order. It follows the contract as the CUDA graphs do (kernels not
 * run while recording, a private memory pool, spans whose calls are replaced before a replay), so
 * captureStep's logic is tested here, on every machine; the host time it saves is core's op
 * logic, not launches.
 */
import type { KernelCapture } from '../backend.ts';
import { CapturePool } from '../capture-pool.ts';

interface Recording {
  queue: (() => void)[];
  pool: CapturePool;
  spans: [number, number][];
}

export class CpuRecorder implements KernelCapture {
  /** Recordings that still reserve memory (the one being made included). */
  readonly pools: CapturePool[] = [];
  private mode: 'eager' | 'record' | 'update' = 'eager';
  private current: Recording | null = null;
  private spanStart = 0;
  private cursor = 0;
  private updatingPool: CapturePool | null = null;
  private readonly recordings = new Map<number, Recording>();
  private nextId = 1;

  constructor(private readonly releaseBlock: (ptr: number, bytes: number) => void) {}

  /** Runs a kernel now, or records it (or replaces its recorded call, in a span being updated). */
  run(kernel: () => void): void {
    if (this.mode === 'eager') kernel();
    else if (this.mode === 'record') this.current!.queue.push(kernel);
    else this.replace(kernel);
  }

  /** The pool allocations go to now: the recording's (or the span being updated's), else none. */
  get pool(): CapturePool | null {
    return this.mode === 'record' ? this.current!.pool : this.mode === 'update' ? this.updatingPool : null;
  }

  get recording(): boolean {
    return this.mode === 'record';
  }

  /** True if a recording keeps the freed block (the caller must not release it). */
  keeps(ptr: number, bytes: number): boolean {
    return this.pools.some((p) => p.give(ptr, bytes));
  }

  begin(): void {
    if (this.mode !== 'eager') throw new Error('capture: a recording is already in progress');
    this.current = { queue: [], pool: new CapturePool(), spans: [] };
    this.pools.push(this.current.pool);
    this.mode = 'record';
  }
  beginSpan(): void {
    this.spanStart = this.current!.queue.length;
    this.current!.pool.beginSpan();
  }
  endSpan(): number {
    const r = this.current!;
    r.spans.push([this.spanStart, r.queue.length]);
    return r.pool.endSpan();
  }
  end(): number {
    const r = this.current!;
    r.pool.end();
    this.mode = 'eager';
    this.current = null;
    const id = this.nextId++;
    this.recordings.set(id, r);
    return id;
  }
  abort(): void {
    const r = this.current;
    this.mode = 'eager';
    this.current = null;
    if (r) this.drop(r);
  }
  updateSpan(recording: number, span: number, issue: () => void): void {
    const r = this.get(recording);
    const [start, end] = r.spans[span];
    this.mode = 'update';
    this.cursor = start;
    this.spanEnd = end;
    this.updateQueue = r.queue;
    this.updatingPool = r.pool;
    try {
      r.pool.updating(span, issue);
    } finally {
      this.mode = 'eager';
      this.updatingPool = null;
    }
    if (this.cursor !== end) throw new Error(`capture: a span queued ${this.cursor - start} kernels when updated, ${end - start} when recorded`);
  }
  replay(recording: number): void {
    for (const kernel of this.get(recording).queue) kernel();
  }
  release(recording: number): void {
    const r = this.get(recording);
    this.recordings.delete(recording);
    this.drop(r);
  }

  private spanEnd = 0;
  private updateQueue: (() => void)[] = [];
  private replace(kernel: () => void): void {
    if (this.cursor >= this.spanEnd) throw new Error('capture: a span queued more kernels when updated than when recorded');
    this.updateQueue[this.cursor++] = kernel;
  }
  private get(recording: number): Recording {
    const r = this.recordings.get(recording);
    if (!r) throw new Error(`capture: no recording ${recording} (released?)`);
    return r;
  }
  private drop(r: Recording): void {
    this.pools.splice(this.pools.indexOf(r.pool), 1);
    r.pool.release(this.releaseBlock);
  }
}
