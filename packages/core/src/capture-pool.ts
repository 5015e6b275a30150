/**
 * The allocation rules of a recording (backend.ts, KernelCapture), for backends whose memory is
 * blocks at addresses: the CPU heap and the CUDA caching allocator use one of these per
 * recording. While recording, a block freed by the step may serve a later allocation of the same
 * step (the replay runs in the same order, so that is as safe as in eager mode); every block the
 * recording touched stays reserved for it until release(), because each replay writes and reads
 * it again. Uploads get blocks of their own that are never reused (their contents are the
 * recording's constants). Spans (argument updates between replays) get back the blocks they got
 * while recording, in the same order.
 */
interface Block {
  readonly bytes: number;
  /** Held by a tensor (not freed since it was handed out). */
  live: boolean;
  /** Written by an upload while recording: never handed out again. */
  constant: boolean;
}

export class CapturePool {
  private readonly blocks = new Map<number, Block>();
  /** Blocks freed while recording, by size, for the recording's later allocations. */
  private readonly reusable = new Map<number, number[]>();
  recording = true;
  /** While a span records: the blocks it allocates, in order; while it updates: the same, replayed. */
  private spanLog: number[] | null = null;
  private replaying: { log: number[]; at: number } | null = null;
  private readonly spans: number[][] = [];

  /** A block of `bytes` for the recording (from its freed blocks, else fresh from `fresh`). */
  take(bytes: number, fresh: (bytes: number) => number): number {
    if (this.replaying) {
      const { log } = this.replaying;
      const ptr = log[this.replaying.at++];
      if (ptr === undefined || this.blocks.get(ptr)?.bytes !== bytes)
        throw new Error('capture: a span allocated differently when its arguments were updated than when it was recorded');
      this.blocks.get(ptr)!.live = true;
      return ptr;
    }
    const list = this.reusable.get(bytes);
    const ptr = list?.pop() ?? fresh(bytes);
    this.blocks.set(ptr, { bytes, live: true, constant: false });
    this.spanLog?.push(ptr);
    return ptr;
  }

  /** Marks a block just taken as the target of an upload: it keeps its contents for every replay. */
  constant(ptr: number): void {
    const b = this.blocks.get(ptr);
    if (b) b.constant = true;
  }

  /**
   * A block freed by its holder: true if this recording keeps it (the caller must not release it);
   * `bytes` registers a block the recording did not allocate but may have read or written.
   */
  give(ptr: number, bytes: number): boolean {
    let b = this.blocks.get(ptr);
    if (!b) {
      if (!this.recording) return false;
      // Made before the recording and freed during it: the recorded kernels may use it.
      this.blocks.set(ptr, (b = { bytes, live: false, constant: true }));
      return true;
    }
    b.live = false;
    if (this.recording && !this.replaying && !b.constant) {
      let list = this.reusable.get(b.bytes);
      if (!list) this.reusable.set(b.bytes, (list = []));
      list.push(ptr);
    }
    return true;
  }

  beginSpan(): void {
    this.spanLog = [];
  }
  endSpan(): number {
    this.spans.push(this.spanLog ?? []);
    this.spanLog = null;
    return this.spans.length - 1;
  }
  /** Runs `fn` with allocations served from span `span`'s log. */
  updating<T>(span: number, fn: () => T): T {
    this.replaying = { log: this.spans[span], at: 0 };
    try {
      return fn();
    } finally {
      this.replaying = null;
    }
  }

  end(): void {
    this.recording = false;
    this.reusable.clear();
  }

  /** Gives every block no tensor holds back through `release`; blocks still held become ordinary (their holders free them). */
  release(release: (ptr: number, bytes: number) => void): void {
    for (const [ptr, b] of this.blocks) if (!b.live) release(ptr, b.bytes);
    this.blocks.clear();
  }
}
