/**
 * The CPU backend's KernelCapture (backend.ts): recording a step's kernel calls as closures over
 * their arguments, replayed in order. It follows the contract as the CUDA graphs do (kernels not
 * run while recording, a private memory pool, spans whose calls are replaced before a replay), so
 * captureStep's logic is tested here, on every machine; the host time it saves is core's op
 * logic, not launches.
 */
import type { CapturePool } from '../capture-pool.ts';
import { KernelRecorder, type RecordingBase } from '../kernel-recorder.ts';

/** A span: the positions [start, end) of its calls in the queue. */
type Span = [number, number];
interface Recording extends RecordingBase<Span> {
  readonly queue: (() => void)[];
}

export class CpuRecorder extends KernelRecorder<Recording, Span> {
  private start = 0;
  /** While a span is updated: the queue, the next position to replace and the span's end. */
  private queue: (() => void)[] = [];
  private cursor = 0;
  private limit = 0;

  /** Runs a kernel now, or records it (or replaces its recorded call, in a span being updated). */
  run(kernel: () => void): void {
    if (this.mode === 'eager') kernel();
    else if (this.mode === 'record') this.current!.queue.push(kernel);
    else {
      if (this.cursor >= this.limit) throw new Error('capture: a span queued more kernels when updated than when recorded');
      this.queue[this.cursor++] = kernel;
    }
  }

  replay(recording: number): void {
    for (const kernel of this.get(recording).queue) kernel();
  }

  protected open(pool: CapturePool): Recording {
    return { queue: [], pool, spans: [] };
  }
  protected spanStart(r: Recording): void {
    this.start = r.queue.length;
  }
  protected spanEnd(r: Recording): Span {
    return [this.start, r.queue.length];
  }
  protected close(): void {}
  protected cancel(): void {}
  protected updateStart(r: Recording, [start, end]: Span): void {
    this.queue = r.queue;
    this.cursor = start;
    this.limit = end;
  }
  protected updateEnd([start, end]: Span): void {
    if (this.cursor !== end) throw new Error(`capture: a span queued ${this.cursor - start} kernels when updated, ${end - start} when recorded`);
  }
  protected discard(): void {}
}
