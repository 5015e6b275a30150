/** Backend tuning entries from benchmark text: each kind of key takes what it should and names what it takes otherwise. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseTuningEntry, type TuningSpec } from '../src/backend-api.ts';

interface Tuning {
  fast: boolean;
  slots: number;
  band?: number;
  mode: 'auto' | 'on' | 'off';
  tiles: string;
}
const spec: TuningSpec<Tuning> = {
  backend: 'test',
  defaults: { fast: true, slots: 8, band: undefined, mode: 'auto', tiles: '' },
  modes: { mode: ['auto', 'on', 'off'] },
  integers: ['band'],
};
const parse = (key: string, value: string) => parseTuningEntry(spec, key, value);

test('booleans, integers, modes and free text parse to their types', () => {
  assert.equal(parse('fast', '0'), { fast: false });
  assert.equal(parse('fast', '1'), { fast: true });
  assert.equal(parse('slots', '264'), { slots: 264 });
  assert.equal(parse('band', '0'), { band: 0 });
  assert.equal(parse('mode', 'off'), { mode: 'off' });
  assert.equal(parse('tiles', 'bsr32=16,8,8,4,16'), { tiles: 'bsr32=16,8,8,4,16' });
});

test('anything else names the backend, the key and what it takes', () => {
  assert.throws(() => parse('fast', 'yes'), /test tuning: fast takes 0 or 1, got 'yes'/);
  assert.throws(() => parse('slots', '-1'), /slots takes a non-negative integer, got '-1'/);
  assert.throws(() => parse('slots', ''), /slots takes a non-negative integer/);
  assert.throws(() => parse('band', '1.5'), /band takes a non-negative integer/);
  assert.throws(() => parse('mode', 'maybe'), /mode takes auto, on, off, got 'maybe'/);
  assert.throws(() => parse('speed', '1'), /test tuning: unknown key 'speed'; expected one of fast, slots, band, mode, tiles/);
});

test.run();
