/**
 * The --out folder of a run. It is checked before anything trains, so that a path that cannot
 * hold checkpoints costs no work, and locked while the run writes to it, so that two runs never
 * write into one folder. A lock left by a process that no longer exists is taken over; the
 * temporary folders of a save that was killed are removed.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { CliError } from './errors.ts';

const LOCK = '.lock';

export interface RunDir {
  path: string;
  /** Removes the lock (also done when the process exits). */
  release(): void;
}

/** Creates `out` if needed, checks that it is a writable folder, and locks it for this process. */
export function openRunDir(out: string): RunDir {
  const path = resolve(out);
  if (existsSync(path)) {
    if (!statSync(path).isDirectory()) throw new CliError(`--out ${out} is a file, not a folder`);
  } else {
    const missing = [path];
    while (!existsSync(dirname(missing[0])) && dirname(missing[0]) !== missing[0]) missing.unshift(dirname(missing[0]));
    const parent = dirname(missing[0]);
    if (!statSync(parent).isDirectory()) throw new CliError(`--out ${out} is under ${parent}, which is a file`);
    // One level at a time: Node's recursive mkdir never returns on some paths (e.g. under /proc).
    for (const dir of missing) {
      try {
        mkdirSync(dir);
      } catch (e) {
        throw new CliError(`--out ${out}: cannot create ${dir} in ${dirname(dir)} (${code(e)})`);
      }
    }
  }
  const probe = join(path, `.write-test-${process.pid}`);
  try {
    writeFileSync(probe, '');
    unlinkSync(probe);
  } catch (e) {
    throw new CliError(`--out ${out} is not writable (${code(e)})`);
  }
  const release = lock(out, join(path, LOCK));
  for (const name of readdirSync(path)) {
    if (/^\.step-\d+\.tmp-\d+$/.test(name)) rmSync(join(path, name), { recursive: true, force: true });
  }
  return { path, release };
}

/** Takes the lock file (naming this process), or throws if a live process holds it. */
function lock(out: string, file: string): () => void {
  const mine = JSON.stringify({ pid: process.pid, host: hostname(), started: new Date().toISOString() });
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(file, mine, { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new CliError(`--out ${out}: cannot create its lock file (${code(e)})`);
      const holder = readHolder(file);
      if (attempt > 0 || (holder && alive(holder))) {
        throw new CliError(
          `--out ${out} is in use by another sparsegrad run${holder ? ` (process ${holder.pid} on ${holder.host}, since ${holder.started})` : ''}; wait for it to finish or choose another --out`,
        );
      }
      rmSync(file, { force: true }); // stale: its process is gone
    }
  }
  let held = true;
  const release = () => {
    if (!held) return;
    held = false;
    process.off('exit', release);
    try {
      if (readFileSync(file, 'utf8') === mine) unlinkSync(file);
    } catch {
      // already gone
    }
  };
  process.on('exit', release);
  return release;
}

interface Holder {
  pid: number;
  host: string;
  started: string;
}

function readHolder(file: string): Holder | null {
  try {
    const h = JSON.parse(readFileSync(file, 'utf8')) as Holder;
    return Number.isInteger(h.pid) ? h : null;
  } catch {
    return null;
  }
}

/** Whether the lock's process still runs (a lock from another host is assumed live). */
function alive(h: Holder): boolean {
  if (h.host !== hostname()) return true;
  try {
    process.kill(h.pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function code(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
}

/** Whether a folder holds anything besides this run's lock (compare never writes into an earlier run). */
export function hasEntries(path: string): boolean {
  return existsSync(path) && readdirSync(path).some((name) => name !== LOCK);
}
