/**
 * The bookkeeping every KernelCapture (backend.ts) shares: the mode (running, recording, updating
 * a span), the recordings by id, and each recording's CapturePool, which the backend's allocator
 * consults through `pool` and `keeps`. A backend supplies how it records kernels and marks spans
 * (the CPU: closures in a queue; CUDA: a stream capture and the graph nodes of each span's launches).
 */
import type { KernelCapture } from './backend.ts';
import { CapturePool } from './capture-pool.ts';

/** A recording as the base keeps it: its pool and, per span, what the backend needs to update it. */
export interface RecordingBase<S> {
  readonly pool: CapturePool;
  readonly spans: S[];
}

export abstract class KernelRecorder<R extends RecordingBase<S>, S> implements KernelCapture {
  /** Recordings that still reserve memory (the one being made included). */
  readonly pools: CapturePool[] = [];
  protected mode: 'eager' | 'record' | 'update' = 'eager';
  /** The recording being made. */
  protected current: R | null = null;
  /** The recording whose span is being updated. */
  private updated: R | null = null;
  private readonly recordings = new Map<number, R>();
  private nextId = 1;

  constructor(private readonly releaseBlock: (ptr: number, bytes: number) => void) {}

  /** A new recording around `pool`, the backend's recording started. */
  protected abstract open(pool: CapturePool): R;
  /** Notes where a span starts in the recording being made. */
  protected abstract spanStart(r: R): void;
  /** What the span that just ended covers. */
  protected abstract spanEnd(r: R): S;
  /** Ends the backend's recording (throws if it cannot be kept). */
  protected abstract close(r: R): void;
  /** Ends the backend's recording and discards it. */
  protected abstract cancel(): void;
  /** Prepares the backend to replace span `span`'s recorded kernels with the ones queued next. */
  protected abstract updateStart(r: R, span: S): void;
  /** Checks that as many kernels replaced them as were recorded. */
  protected abstract updateEnd(span: S): void;
  /** Frees what the backend holds for a recording. */
  protected abstract discard(r: R): void;
  abstract replay(recording: number): void;

  /** The pool allocations go to now: the recording's (or the span being updated's), else none. */
  get pool(): CapturePool | null {
    return this.mode === 'record' ? this.current!.pool : this.mode === 'update' ? this.updated!.pool : null;
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
    const pool = new CapturePool();
    this.current = this.open(pool);
    this.pools.push(pool);
    this.mode = 'record';
  }
  beginSpan(): void {
    this.spanStart(this.current!);
    this.current!.pool.beginSpan();
  }
  endSpan(): number {
    const r = this.current!;
    r.spans.push(this.spanEnd(r));
    return r.pool.endSpan();
  }
  end(): number {
    const r = this.current!;
    this.mode = 'eager';
    this.current = null;
    r.pool.end();
    try {
      this.close(r);
    } catch (e) {
      this.drop(r.pool);
      throw e;
    }
    const id = this.nextId++;
    this.recordings.set(id, r);
    return id;
  }
  abort(): void {
    const r = this.current;
    this.mode = 'eager';
    this.current = null;
    this.cancel();
    if (r) this.drop(r.pool);
  }
  updateSpan(recording: number, span: number, issue: () => void): void {
    const r = this.get(recording);
    const s = r.spans[span];
    this.updateStart(r, s);
    this.mode = 'update';
    this.updated = r;
    try {
      r.pool.updating(span, issue);
    } finally {
      this.mode = 'eager';
      this.updated = null;
    }
    this.updateEnd(s);
  }
  release(recording: number): void {
    const r = this.get(recording);
    this.recordings.delete(recording);
    this.discard(r);
    this.drop(r.pool);
  }

  protected get(recording: number): R {
    const r = this.recordings.get(recording);
    if (!r) throw new Error(`capture: no recording ${recording} (released?)`);
    return r;
  }
  private drop(pool: CapturePool): void {
    this.pools.splice(this.pools.indexOf(pool), 1);
    pool.release(this.releaseBlock);
  }
}
