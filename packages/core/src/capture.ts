/**
 * A captured training step: `captureStep(fn)` runs fn eagerly a few times, then records the
 * kernels one call queues (the backend's KernelCapture: CUDA graphs, recorded closures on the CPU)
 * and from then on replays them, so that a step costs one launch on the host instead of hundreds
 * of ops. A replay runs the kernels an eager step would, with the same arguments (so its results
 * are the eager ones bit for bit wherever the kernels are deterministic: on the CPU; GPU
 * scatter-adds add in varying order in eager steps too):
 *
 * - Data that changes between steps enters as fn's tensor arguments: each call copies them into
 *   the recording's own input tensors before the replay. Shapes or dtypes other than those
 *   recorded run fn eagerly (`eagerCalls` counts them).
 * - Host values that change between steps are issued in spans (`varying`): the optimizer's step
 *   (its step count and learning rate), random keys (dropout). Before each replay their host code
 *   runs again in order, advancing the optimizer and the random generator exactly as an eager
 *   step would, and the backend replaces the recorded kernels' arguments.
 * - Everything else fn computes on the host is recorded as it was: a step whose other host values
 *   change would replay stale ones. The eager warm-up calls are checked for what cannot be
 *   recorded (a read back, an update that replaces a tensor made before the step instead of
 *   writing it in place); such a step always runs eagerly and `reason` says why.
 *
 * fn's returned tensors (a Tensor, an array or a plain object of them) are the step's outputs: each
 * call returns new handles on them, overwritten by the next call (read them before it).
 *
 * A tensor the recording reads that assign() gives a new buffer (a loaded state dict, an
 * optimizer's loaded moments) makes the next call record the step again (`rerecorded`). Disposing
 * such a tensor while the step lives is the caller's error, as with PyTorch's CUDA graphs: dispose
 * the captured step first.
 */
import type { Backend } from './backend.ts';
import { engine } from './engine.ts';
import { opError } from './errors.ts';
import { contiguousStrides } from './shape.ts';
import { empty, keep, Storage, Tensor } from './tensor.ts';

/** The state of a step being probed (an eager warm-up call) or recorded. */
export class CaptureSession {
  private static nextEpoch = 1;
  /** Storages made during this session carry it (Storage.epoch). */
  readonly epoch = CaptureSession.nextEpoch++;
  readonly problems: string[] = [];
  readonly spans: { span: number; issue: () => void }[] = [];
  constructor(
    readonly backend: Backend,
    /** false: an eager call, only checked. */
    readonly recording: boolean,
  ) {}
  problem(what: string): void {
    if (!this.problems.includes(what)) this.problems.push(what);
  }
}

/**
 * Runs `issue`, whose kernels take host values that change from step to step. In a captured step,
 * `reissue` (by default `issue`) runs before every replay, in the order the step issued them: it
 * must advance whatever host state an eager step advances (a step count, the random generator)
 * and queue the same kernels on the same buffers (held by the closure: the step's tensors are
 * gone by then) with this step's values.
 */
export function varying(issue: () => void, reissue: () => void = issue): void {
  const s = engine.capture;
  if (!s?.recording || !s.backend.capture) {
    issue();
    return;
  }
  s.backend.capture.beginSpan();
  issue();
  s.spans.push({ span: s.backend.capture.endSpan(), issue: reissue });
}

/** Marks the step being checked or recorded (if any) as one a replay could not reproduce, saying why. */
export function notReplayable(why: string): void {
  engine.capture?.problem(why);
}

type Outputs = Tensor | readonly Tensor[] | { readonly [k: string]: Tensor } | undefined;

export interface CaptureOptions {
  /** Eager calls before recording (caches filled, optimizer state created, checked for what cannot be recorded); default 2. */
  warmup?: number;
}

export class CapturedStep<A extends Tensor[], R extends Outputs> {
  /** Why the step always runs eagerly (null while it can be captured). */
  reason: string | null = null;
  /** Calls that ran eagerly after the recording (inputs of other shapes). */
  eagerCalls = 0;
  /** Times the step was recorded again because a tensor it reads got a new buffer (assign(): a loaded state). */
  rerecorded = 0;
  private calls = 0;
  private recording: number | null = null;
  private backend: Backend | null = null;
  private inputs: Tensor[] = [];
  private outputs: R | undefined;
  private spans: { span: number; issue: () => void }[] = [];
  /** Storages made before the recording ended (serial below this) may be read by it. */
  private horizon = 0;
  /** Set when assign() replaced such a storage: the next call records anew. */
  private stale = false;
  private readonly watch = (serial: number) => {
    if (serial < this.horizon) this.stale = true;
  };

  constructor(
    private readonly fn: (...inputs: A) => R,
    private readonly opts: CaptureOptions = {},
  ) {}

  /** Whether the next matching call replays a recording. */
  get captured(): boolean {
    return this.recording !== null;
  }

  run(...inputs: A): R {
    const backend = inputs[0]?.backend ?? engine.backend;
    if (this.reason !== null || !backend.capture) {
      this.reason ??= `the ${backend.name} backend cannot record kernels`;
      return this.fn(...inputs);
    }
    if (this.recording !== null && this.stale) {
      // A tensor the recording reads got a new buffer (a loaded state): record the step again.
      this.release();
      this.calls = 0;
      this.rerecorded++;
    }
    if (this.recording !== null) {
      if (!this.matches(inputs)) {
        this.eagerCalls++;
        return this.fn(...inputs);
      }
      return this.replay(inputs);
    }
    if (this.calls++ < (this.opts.warmup ?? 2)) return this.probe(backend, inputs);
    return this.record(backend, inputs);
  }

  /** Releases the recording and the step's input and output tensors. */
  dispose(): void {
    this.release();
  }

  private release(): void {
    if (this.recording !== null) this.backend!.capture!.release(this.recording);
    this.recording = null;
    engine.assignWatchers.delete(this.watch);
    this.stale = false;
    for (const t of [...this.inputs, ...outputTensors(this.outputs)]) t.dispose();
    this.inputs = [];
    this.outputs = undefined;
  }

  /** An eager call, checked for what a recording could not reproduce. */
  private probe(backend: Backend, inputs: A): R {
    const session = new CaptureSession(backend, false);
    const prev = engine.capture;
    engine.capture = session;
    try {
      return this.fn(...inputs);
    } finally {
      engine.capture = prev;
      if (session.problems.length) this.reason = session.problems.join('; ');
    }
  }

  private record(backend: Backend, inputs: A): R {
    const capture = backend.capture!;
    this.backend = backend;
    this.inputs = inputs.map((t) => keep(empty(t.shape, t.dtype, backend)));
    this.copyInputs(inputs);
    const session = new CaptureSession(backend, true);
    const prev = engine.capture;
    engine.capture = session;
    capture.begin();
    let out: R;
    try {
      out = this.fn(...(this.inputs as A));
    } catch (e) {
      capture.abort();
      throw e;
    } finally {
      engine.capture = prev;
    }
    if (session.problems.length) {
      // The warm-up calls took the same path; a difference here is the step's own doing.
      capture.abort();
      throw opError('captureStep', `the step could not be recorded: ${session.problems.join('; ')}`);
    }
    this.recording = capture.end();
    this.spans = session.spans;
    this.horizon = Storage.horizon;
    engine.assignWatchers.add(this.watch);
    for (const t of outputTensors(out)) keep(t);
    this.outputs = out;
    capture.replay(this.recording);
    return handles(out);
  }

  private replay(inputs: A): R {
    const capture = this.backend!.capture!;
    this.copyInputs(inputs);
    const prev = engine.updating;
    engine.updating = true;
    try {
      for (const { span, issue } of this.spans) capture.updateSpan(this.recording!, span, issue);
    } finally {
      engine.updating = prev;
    }
    capture.replay(this.recording!);
    return handles(this.outputs as R);
  }

  private matches(inputs: readonly Tensor[]): boolean {
    return (
      inputs.length === this.inputs.length &&
      inputs.every((t, i) => t.backend === this.backend && t.dtype === this.inputs[i].dtype && t.shape.join() === this.inputs[i].shape.join())
    );
  }

  /** The call's inputs into the recording's input tensors (queued before the replay, outside it). */
  private copyInputs(inputs: readonly Tensor[]): void {
    inputs.forEach((t, i) => {
      if (!(t instanceof Tensor)) throw opError('captureStep', `argument ${i} is not a Tensor`);
      const dst = this.inputs[i];
      if (t.size > 0)
        t.backend.copy(t.viewFor('captureStep'), { buffer: dst.bufferFor('captureStep'), shape: t.shape, strides: contiguousStrides(t.shape), offset: 0 });
    });
  }
}

/** Records fn's kernels after a few eager calls and replays them from then on (see CapturedStep). */
export function captureStep<A extends Tensor[], R extends Outputs>(fn: (...inputs: A) => R, opts: CaptureOptions = {}): CapturedStep<A, R> {
  return new CapturedStep(fn, opts);
}

function outputTensors(out: Outputs | undefined): Tensor[] {
  if (!out) return [];
  if (out instanceof Tensor) return [out];
  return Array.isArray(out) ? [...out] : Object.values(out);
}

/** New handles on the outputs' storage (the caller may dispose them; the recording keeps its own). */
function handles<R extends Outputs>(out: R): R {
  if (!out) return out;
  if (out instanceof Tensor) return out.detach() as R;
  if (Array.isArray(out)) return out.map((t: Tensor) => t.detach()) as unknown as R;
  return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, (t as Tensor).detach()])) as R;
}
