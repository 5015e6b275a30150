import cliProgress from 'cli-progress';

export interface StepInfo {
  step: number;
  total: number;
  loss: number;
  tokensPerSec: number;
  elapsedSec: number;
}

const fmtTime = (s: number) =>
  s >= 3600 ? `${(s / 3600).toFixed(1)}h` : s >= 60 ? `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${s.toFixed(0)}s`;

/**
 * Training progress: a live bar (step, loss, tokens/s, elapsed, ETA) on a terminal, and plain
 * periodic lines when stdout is not a TTY (logs, CI, pipes).
 */
export class Progress {
  private multi: cliProgress.MultiBar | null = null;
  private bar: cliProgress.SingleBar | null = null;
  private lastLine = 0;

  constructor(
    private readonly tty = !!process.stdout.isTTY,
    private readonly write = (s: string) => process.stdout.write(s),
  ) {}

  start(label: string, total: number, startStep: number): void {
    if (!this.tty) {
      this.write(`${label}: ${total - startStep} steps\n`);
      return;
    }
    this.multi = new cliProgress.MultiBar(
      {
        format: `${label} {bar} {value}/{total} | loss {loss} | {tps} tok/s | {elapsed} elapsed | ETA {eta}`,
        barsize: 24,
        hideCursor: true,
        clearOnComplete: false,
        stopOnComplete: false,
      },
      cliProgress.Presets.shades_classic,
    );
    this.bar = this.multi.create(total, startStep, { loss: '-', tps: '-', elapsed: '0s', eta: '-' });
  }

  update(info: StepInfo, startStep: number): void {
    const done = info.step - startStep;
    const eta = done > 0 ? ((info.total - info.step) * info.elapsedSec) / done : 0;
    const payload = { loss: info.loss.toFixed(3), tps: Math.round(info.tokensPerSec), elapsed: fmtTime(info.elapsedSec), eta: fmtTime(eta) };
    if (this.bar) {
      this.bar.update(info.step, payload);
      return;
    }
    // Plain mode: about 20 lines per run, plus the last step.
    const every = Math.max(1, Math.ceil((info.total - startStep) / 20));
    if (info.step - this.lastLine >= every || info.step === info.total) {
      this.lastLine = info.step;
      this.write(`step ${info.step}/${info.total}  loss ${payload.loss}  ${payload.tps} tok/s  elapsed ${payload.elapsed}  eta ${payload.eta}\n`);
    }
  }

  log(line: string): void {
    if (this.multi) this.multi.log(`${line}\n`);
    else this.write(`${line}\n`);
  }

  stop(): void {
    this.multi?.stop();
    this.multi = null;
    this.bar = null;
    this.lastLine = 0;
  }
}
