/**
 * A backend tuning entry from its text (benchmarks' `--variants key=value`), checked against the
 * backend's defaults: booleans as 0 or 1, numbers as non-negative integers, modes as one of their
 * values; anything else is an Error naming the backend, the key and what it takes.
 */
export interface TuningSpec<T> {
  /** The backend's name, for errors. */
  backend: string;
  defaults: Readonly<T>;
  /** The values of each mode key (a string whose values are fixed). */
  modes?: Partial<Record<keyof T, readonly string[]>>;
  /** Keys whose default is undefined but which take a non-negative integer. */
  integers?: readonly (keyof T)[];
}

export function parseTuningEntry<T extends object>(spec: TuningSpec<T>, key: string, value: string): Partial<T> {
  const { backend, defaults } = spec;
  const fail = (takes: string) => new Error(`${backend} tuning: ${key} takes ${takes}, got '${value}'`);
  if (!(key in defaults)) throw new Error(`${backend} tuning: unknown key '${key}'; expected one of ${Object.keys(defaults).join(', ')}`);
  const k = key as keyof T;
  const current = defaults[k];
  if (typeof current === 'boolean') {
    if (value !== '0' && value !== '1') throw fail('0 or 1');
    return { [key]: value === '1' } as Partial<T>;
  }
  if (typeof current === 'number' || spec.integers?.includes(k)) {
    const n = Number(value);
    if (value.trim() === '' || !Number.isInteger(n) || n < 0) throw fail('a non-negative integer');
    return { [key]: n } as Partial<T>;
  }
  const modes = spec.modes?.[k];
  if (modes && !modes.includes(value)) throw fail(modes.join(', '));
  return { [key]: value } as Partial<T>;
}
